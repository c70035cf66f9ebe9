"""The export job end to end: a real worker process runs it, and its progress reaches the
owner's notification stream on a live server (embedded: the stream polls the database;
with Redis: the worker's events arrive through the channel layer)."""

import asyncio
import csv
import gzip
import json
import os
import signal
import time
from contextlib import asynccontextmanager

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings

from chat.models import Membership
from chat.tests.factories import add_messages, room_with
from jobs import services, tasks
from jobs.models import Job
from jobs.tests.factories import queued_job
from jobs.tests.waits import latest_job, wait_job, wait_task_finished, while_stopped
from notifications.models import Notification
from streamsite.testing.live_server import session_cookies
from streamsite.testing.sse import StreamReader

pytestmark = pytest.mark.live_server

#: Rows exported: with a progress count every 10 rows (``task_worker``), 2,000 counts over
#: a second or more, so that coalescing them to 4 a second shows.
ROWS = 20_000


@asynccontextmanager
async def logged_in(server, user):
    """An HTTP client logged in as ``user``, with a CSRF token for its POSTs."""
    cookies = await sync_to_async(session_cookies)(user)
    async with httpx.AsyncClient(base_url=server.url, cookies=cookies, timeout=20) as client:
        page = await client.get("/jobs/")
        assert page.status_code == 200
        client.csrf = client.cookies["csrftoken"]
        yield client


async def post(client, path: str) -> httpx.Response:
    return await client.post(path, data={"csrfmiddlewaretoken": client.csrf})


@asynccontextmanager
async def job_stream(client):
    """The client's notification stream, once it has caught up (its first ``unread``)."""
    async with client.stream("GET", "/notifications/stream/") as response:
        reader = StreamReader(response.aiter_raw())
        await reader.until(lambda e: e["event"] == "unread")
        yield reader


async def received(reader, predicate, seconds: float = 10) -> dict:
    """The first event received so far, or from now on, that satisfies ``predicate``."""
    for event in reader.events:
        if predicate(event):
            return event
    return await reader.until(predicate, seconds)


def job_events(reader, job_id: int) -> list[dict]:
    return [
        data
        for e in reader.events
        if e["event"] == "job" and (data := json.loads(e["data"]))["id"] == job_id
    ]


async def test_export_runs_in_a_worker_and_streams_coalesced_progress(
    live_server_asgi, task_worker, user, make_notifications, media_root
):
    """The worker exports every row into a gzip file; the stream shows the job's states
    in order (seq rising, done never going back), at most 4 progress events a second,
    then "Your export is ready" with the download link."""
    await sync_to_async(make_notifications)(user, ROWS)
    async with logged_in(live_server_asgi, user) as client, job_stream(client) as reader:
        assert (await post(client, "/jobs/notifications-export/")).status_code == 302
        job = await latest_job(user)
        final = await reader.until(
            lambda e: e["event"] == "job" and json.loads(e["data"])["state"] == "succeeded",
            seconds=30,
        )
        # In the same transaction as the job's last write: it may come just before or after.
        ready = await received(reader, lambda e: e["event"] == "notification")
    data = json.loads(final["data"])
    assert data["id"] == job.pk
    assert data["done"] == data["total"] == ROWS
    assert data["result_url"] == f"/jobs/{job.pk}/download/"
    assert json.loads(ready["data"])["title"] == "Your export is ready"
    assert json.loads(ready["data"])["url"] == data["result_url"]

    events = job_events(reader, job.pk)
    seqs = [event["seq"] for event in events]
    assert seqs == sorted(set(seqs)), "each version once, in order"
    dones = [event["done"] for event in events]
    assert dones == sorted(dones)
    job = await latest_job(user)
    running = [event for event in events if event["state"] == "running"]
    seconds = (job.finished_at - job.started_at).total_seconds()
    # 2,000 counts of 10 rows: one write (and event) a quarter second at most.
    assert len(running) <= seconds / settings.JOB_PROGRESS_SECONDS + 2
    assert job.seq <= seconds / settings.JOB_PROGRESS_SECONDS + 5, "coalesced before written"

    [path] = (media_root / "jobs").rglob("*.ndjson.gz")
    with gzip.open(path, "rt") as lines:
        rows = [json.loads(line) for line in lines]
    assert len(rows) == ROWS
    assert [row["id"] for row in rows] == sorted(row["id"] for row in rows)


async def test_cancel_stops_the_worker_between_units_and_leaves_no_file(
    live_server_asgi, task_worker_factory, user, make_notifications, media_root
):
    """Cancel while the worker runs: it stops at its next progress write, records how far
    it got, and no file (partial or whole) is left in storage."""
    # Progress written every 20 ms: the job is seen mid-way long before it could finish.
    task_worker = task_worker_factory(JOB_PROGRESS_MILLISECONDS="20")
    await sync_to_async(make_notifications)(user, ROWS)
    async with logged_in(live_server_asgi, user) as client, job_stream(client) as reader:
        await post(client, "/jobs/notifications-export/")
        job = await latest_job(user)
        await wait_job(job.pk, lambda job: job.done > 0)
        # The worker held still while the cancel lands, so it cannot finish first.
        response = await while_stopped(task_worker, lambda: post(client, f"/jobs/{job.pk}/cancel/"))
        assert response.status_code == 302
        cancelled = await reader.until(
            lambda e: e["event"] == "job" and json.loads(e["data"])["state"] == "cancelled"
        )
    assert json.loads(cancelled["data"])["result_url"] is None
    await wait_task_finished(job.pk)
    job = await latest_job(user)
    assert job.state == Job.State.CANCELLED
    assert 0 < job.done < job.total == ROWS
    assert not job.result
    assert not list(media_root.rglob("*.gz"))


async def test_a_write_elsewhere_mid_export_does_not_fail_it(
    task_worker_factory, user, other_user, make_notifications, media_root
):
    """Another process commits while the export streams its rows (someone else's new
    notification): the job still writes its progress and succeeds. On SQLite the cursor
    reading the rows pins a snapshot, so a job writing through that same connection
    failed here with "database is locked"."""
    worker = task_worker_factory(JOB_PROGRESS_MILLISECONDS="20")
    await sync_to_async(make_notifications)(user, ROWS)
    job = await sync_to_async(queued_job)(user, task=tasks.notifications_export)
    await wait_job(job.pk, lambda job: job.done > 0)
    # The worker held still, so the write lands mid-export, not after it.
    await while_stopped(worker, sync_to_async(lambda: make_notifications(other_user, 1)))
    job = await wait_job(job.pk, lambda job: not job.is_active)
    assert (job.state, job.done, job.total, job.error) == (Job.State.SUCCEEDED, ROWS, ROWS, "")
    assert list(media_root.rglob("*.ndjson.gz"))


async def test_a_job_whose_worker_is_killed_fails_within_the_bound_and_its_owner_is_told(
    task_worker_factory, user, make_notifications, settings
):
    """kill -9 mid-job: the job does not stay running. Once its worker's mark is older
    than JOB_STALE_SECONDS, the sweep (run by the list page and by streams) fails it and
    its owner is notified with the reason; not before."""
    settings.JOB_STALE_SECONDS = 3
    worker = task_worker_factory(JOB_PROGRESS_MILLISECONDS="20", JOB_STALE_SECONDS="3")
    await sync_to_async(make_notifications)(user, ROWS)
    job = await sync_to_async(queued_job)(user, task=tasks.notifications_export)
    job = await wait_job(job.pk, lambda job: job.done > 0)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.process.wait(10)
    killed_at = time.monotonic()
    sweep = sync_to_async(services.jobs_fail_stale)
    assert await sweep(owner_id=user.pk) == 0, "its mark is fresh: the worker may be alive"
    while not await sweep(owner_id=user.pk):
        assert time.monotonic() - killed_at < 3 + 5, "not failed within the bound"
        await asyncio.sleep(0.1)
    assert time.monotonic() - killed_at >= 3 - 1  # the mark was renewed until the kill
    job = await latest_job(user)
    assert job.state == Job.State.FAILED and job.error == services.WORKER_LOST
    note = await sync_to_async(Notification.objects.get)(recipient=user, level="error")
    assert note.body == services.WORKER_LOST


async def test_a_room_export_runs_in_a_worker_for_a_member_only(
    task_worker, user, other_user, media_root
):
    """A member's export holds every message of the room; one whose owner left the room
    before it ran fails with the reason, and leaves no file."""

    def setup():
        room = room_with("ops", private=True, members=[user, other_user])
        add_messages(room, user, 1234)
        return room

    room = await sync_to_async(setup)()
    start = sync_to_async(services.job_start)
    mine = await start(
        owner=user, kind=Job.Kind.ROOM_EXPORT, task=tasks.room_export, room_id=room.pk
    )
    mine = await wait_job(mine.pk, lambda job: not job.is_active)
    assert (mine.state, mine.done, mine.total) == (Job.State.SUCCEEDED, 1234, 1234)
    with gzip.open(media_root / mine.result.name, "rt") as lines:
        rows = [json.loads(line) for line in lines]
    assert len(rows) == 1234 and {row["room"] for row in rows} == {"ops"}

    as_csv = await start(
        owner=user,
        kind=Job.Kind.ROOM_EXPORT,
        task=tasks.room_export,
        room_id=room.pk,
        export_format="csv",
    )
    as_csv = await wait_job(as_csv.pk, lambda job: not job.is_active)
    assert (as_csv.state, as_csv.done, as_csv.total) == (Job.State.SUCCEEDED, 1234, 1234)
    assert as_csv.result.name.endswith(".csv.gz")
    with gzip.open(media_root / as_csv.result.name, "rt", newline="") as lines:
        table = list(csv.DictReader(lines))
    assert [row["id"] for row in table] == [str(row["id"]) for row in rows]
    assert {row["author_username"] for row in table} == {user.username}

    await sync_to_async(Membership.objects.filter(room=room, user=other_user).delete)()
    theirs = await start(
        owner=other_user, kind=Job.Kind.ROOM_EXPORT, task=tasks.room_export, room_id=room.pk
    )
    theirs = await wait_job(theirs.pk, lambda job: not job.is_active)
    assert (theirs.state, theirs.error) == (Job.State.FAILED, "You can no longer export this room.")
    assert not theirs.result


async def test_two_workers_share_the_queue_and_run_each_job_once(
    task_worker_factory, user, make_notifications
):
    """Eight exports, two workers: every job runs once (one task attempt, by one worker,
    one "ready" notification each) and all of them finish."""
    from django_tasks_db.models import DBTaskResult

    task_worker_factory(), task_worker_factory()
    await sync_to_async(make_notifications)(user, 300)
    start = sync_to_async(queued_job)
    jobs = [await start(user, task=tasks.notifications_export) for _ in range(8)]
    for job in jobs:
        done = await wait_job(job.pk, lambda job: not job.is_active, seconds=30)
        # The feed as the job began: also the "ready" notes of jobs that finished before.
        assert done.state == Job.State.SUCCEEDED and 300 <= done.done == done.total

    @sync_to_async
    def runs():
        return [
            (result.args_kwargs["args"][0], result.worker_ids)
            for result in DBTaskResult.objects.filter(task_path="jobs.tasks.notifications_export")
        ]

    ran = await runs()
    assert sorted(job_id for job_id, _ in ran) == sorted(job.pk for job in jobs)
    assert all(len(worker_ids) == 1 for _, worker_ids in ran)
    ready = sync_to_async(
        Notification.objects.filter(recipient=user, title="Your export is ready").count
    )
    assert await ready() == 8
