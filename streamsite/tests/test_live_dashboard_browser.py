"""The admin's Live page in a real Chromium against the production server."""

from contextlib import AsyncExitStack

import httpx
import pytest
from asgiref.sync import sync_to_async
from playwright.async_api import expect

from notifications.tests.test_browser import AdminSender
from streamsite.testing.audit import axe_violations, save_screenshot
from streamsite.testing.browser import context_for
from streamsite.testing.live_server import session_cookies

pytestmark = [pytest.mark.browser, pytest.mark.live_server]

#: What live.js shows for a figure with no value (a latency when nothing was delivered).
NO_FIGURE = "\u2013"

uvicorn_only = pytest.mark.parametrize("live_server_asgi", ["uvicorn"], indirect=True)


async def open_dashboard(browser, server, staff_user, **options):
    """The Live page, once it has received a few samples; and the console errors it logs."""
    context = await context_for(browser, server.url, staff_user, **options)
    page = await context.new_page()
    errors: list[str] = []

    def on_console(message) -> None:
        url = message.location.get("url", "")
        # Chromium asks for /favicon.ico by itself; the site has none (a 404 on every page).
        if message.type == "error" and not url.endswith("/favicon.ico"):
            errors.append(f"{message.text} ({url})")

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(f"{server.url}/admin/live/")
    root = page.locator("#content-main")
    await expect(root).to_have_attribute("data-live-state", "live")
    await expect(root).to_have_attribute("data-live-samples", "3", timeout=10_000)
    return page, errors


def total_figure(page, name: str):
    return page.locator(f"[data-live='total-row'] [data-figure='{name}']")


@uvicorn_only
async def test_the_page_shows_live_figures_and_draws_charts(browser, live_server_asgi, staff_user):
    page, errors = await open_dashboard(
        browser, live_server_asgi, staff_user, viewport={"width": 1280, "height": 1000}
    )
    # This server's process, and on Redis any other server of the session sharing it.
    await expect(page.locator("[data-live='processes'] tr").first).to_be_visible()
    await expect(total_figure(page, "db")).to_have_text("ok", timeout=10_000)
    # uPlot drew each chart: a canvas with a size.
    charts = page.locator(".live-chart canvas")
    await expect(charts).to_have_count(4)
    assert await charts.first.evaluate("c => c.width > 0 && c.height > 0")
    for scheme in ("light", "dark"):
        await page.emulate_media(color_scheme=scheme)
        await save_screenshot(page, f"live-dashboard-{scheme}")
        assert await axe_violations(page) == [], scheme
    assert errors == []
    await page.context.close()


@uvicorn_only
async def test_the_figures_move_when_streams_open_and_messages_are_sent(
    browser, live_server_asgi, staff_user, user
):
    """Three streams opened show as three more; a notification to their user as deliveries."""
    page, errors = await open_dashboard(browser, live_server_asgi, staff_user)
    before = int(await total_figure(page, "streams").inner_text())
    sender = AdminSender(await page.context.new_page(), live_server_asgi)
    cookies = await sync_to_async(session_cookies)(user)
    async with (
        httpx.AsyncClient(base_url=live_server_asgi.url, cookies=cookies) as client,
        AsyncExitStack() as streams,
    ):
        for _ in range(3):
            await streams.enter_async_context(client.stream("GET", "/notifications/stream/"))
        await expect(total_figure(page, "streams")).to_have_text(str(before + 3))
        # Sent in the server process (the admin's action), so on every backend.
        await sender.send(user, "Watched")
        await expect(total_figure(page, "delivered_per_s")).not_to_have_text("0")
        await expect(total_figure(page, "p50_ms")).not_to_have_text(NO_FIGURE)
    await expect(total_figure(page, "streams")).to_have_text(str(before))
    assert errors == []
    await page.context.close()
