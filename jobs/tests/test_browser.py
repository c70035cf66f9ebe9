"""The jobs page in a real Chromium: start an export, watch the bar in two tabs, reload,
get the bell notification, download the file; cancel another."""

import gzip
import json

import pytest
from asgiref.sync import sync_to_async
from playwright.async_api import expect

from jobs.models import Job
from jobs.tests.waits import latest_job, wait_job, wait_task_finished, while_stopped
from streamsite.testing.browser import session_cookie_for

pytestmark = [pytest.mark.browser, pytest.mark.live_server]

ROWS = 20_000


def job_row(page, job_id: int):
    return page.locator(f"#job-{job_id}")


async def test_export_bar_moves_in_two_tabs_survives_a_reload_and_downloads(
    browser, live_server_factory, task_worker_factory, user, make_notifications, media_root
):
    server = live_server_factory("daphne", MEDIA_ROOT=str(media_root))
    # Progress every 20 ms, counted every 5 rows: seconds of work, seen half-way at once.
    worker = task_worker_factory(JOB_PROGRESS_MILLISECONDS="20", JOB_EXPORT_CHUNK_ROWS="5")
    await sync_to_async(make_notifications)(user, ROWS)
    context = await browser.new_context(accept_downloads=True)
    context.set_default_timeout(10_000)
    await context.add_cookies([await sync_to_async(session_cookie_for)(user, server.url)])
    first, second = await context.new_page(), await context.new_page()
    for page in (first, second):
        await page.goto(f"{server.url}/jobs/")
        await expect(page.locator("body")).to_have_attribute("data-notifications-state", "live")

    await first.get_by_test_id("export-notifications").click()
    job = await latest_job(user)
    job = await wait_job(job.pk, lambda job: job.done > 0)
    for page in (first, second):  # the bar moves in both tabs
        bar = job_row(page, job.pk).locator("[data-job-bar]")
        await expect(bar).not_to_have_attribute("value", "0")

    async def half_way():
        """Both tabs show the bar moved; a reload shows it where the database has it."""
        for page in (first, second):
            row = job_row(page, job.pk)
            await expect(row.locator("[data-job-state]")).to_have_text("Running")
            await expect(row.locator("[data-job-meta]")).to_contain_text(f"of {ROWS} rows")
            shown = int(await row.locator("[data-job-bar]").get_attribute("value"))
            assert 0 < shown < ROWS
        await second.reload()
        stands = await latest_job(user)
        assert 0 < stands.done < ROWS
        await expect(job_row(second, job.pk).locator("[data-job-bar]")).to_have_attribute(
            "value", str(stands.done)
        )

    await while_stopped(worker, half_way, blocked_seconds=30)

    for page in (first, second):
        row = job_row(page, job.pk)
        await expect(row.locator("[data-job-state]")).to_have_text("Succeeded", timeout=30_000)
        await expect(row.locator("[data-job-bar]")).to_have_attribute("value", str(ROWS))
    # The seeded rows are unread; "Your export is ready" makes one more.
    await expect(first.get_by_test_id("bell-count")).to_have_text(str(ROWS + 1))
    async with first.expect_download() as download_info:
        await job_row(first, job.pk).locator("[data-job-download]").click()
    download = await download_info.value
    path = await download.path()
    with gzip.open(path, "rt") as lines:
        rows = [json.loads(line) for line in lines]
    assert len(rows) == ROWS


async def test_cancel_from_the_page(
    browser, live_server_factory, task_worker_factory, user, make_notifications, media_root
):
    server = live_server_factory("daphne", MEDIA_ROOT=str(media_root))
    worker = task_worker_factory(JOB_PROGRESS_MILLISECONDS="20")
    await sync_to_async(make_notifications)(user, ROWS)
    context = await browser.new_context()
    context.set_default_timeout(10_000)
    await context.add_cookies([await sync_to_async(session_cookie_for)(user, server.url)])
    page = await context.new_page()
    await page.goto(f"{server.url}/jobs/")
    await expect(page.locator("body")).to_have_attribute("data-notifications-state", "live")
    await page.get_by_test_id("export-notifications").click()
    job = await wait_job((await latest_job(user)).pk, lambda job: job.done > 0)

    async def cancel():
        await job_row(page, job.pk).get_by_role("button", name="Cancel").click()
        return await wait_job(job.pk, lambda job: job.state == Job.State.CANCELLED)

    await while_stopped(worker, cancel)
    await expect(job_row(page, job.pk).locator("[data-job-state]")).to_have_text("Cancelled")
    await wait_task_finished(job.pk)
    job = await latest_job(user)
    assert job.state == Job.State.CANCELLED and 0 < job.done < ROWS
    assert not list(media_root.rglob("*.gz"))
    await expect(job_row(page, job.pk).locator("[data-job-download]")).to_have_count(0)
