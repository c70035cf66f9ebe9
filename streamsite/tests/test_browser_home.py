"""The home dashboard, live in Chromium: while alice keeps it open, what happens elsewhere
(a mention in a room, a question to the assistant, an export started then cancelled, a
message in one of her rooms) shows on it without a reload, from the notification stream's
events; and the /chat/ rooms list's unread badges go up the same way.

The server is the production one asking the fake upstream (the assistant answers).
"""

import re

import pytest
from asgiref.sync import sync_to_async
from playwright.async_api import expect

from assistant import services as assistant_services
from chat import services as chat_services
from chat.tests.test_browser import expect_state, message, send
from streamsite.testing.browser import context_for

pytestmark = [pytest.mark.browser, pytest.mark.live_server]

#: Within the streams' coalescing (a second) and a delivery, with room for a slow machine.
LIVE_MS = 10_000


@pytest.fixture
def server(assistant_servers, transactional_db, fake_upstream):
    return assistant_servers("uvicorn")


def seed(user, other_user):
    lobby = chat_services.room_create(creator=other_user, name="Lobby", slug="lobby")
    chat_services.membership_add(room=lobby, user=user)
    older = assistant_services.conversation_create(owner=user, title="Older question")
    newer = assistant_services.conversation_create(owner=user, title="Newer question")
    return lobby, older, newer


async def live_page(context, url: str):
    page = await context.new_page()
    await page.goto(url)
    await expect(page.locator("body")).to_have_attribute("data-notifications-state", "live")
    await page.evaluate("window.notReloaded = true")
    return page


async def test_the_dashboard_follows_rooms_notifications_conversations_and_jobs(
    browser, server, fake_upstream, user, other_user
):
    lobby, older, _newer = await sync_to_async(seed)(user, other_user)
    await fake_upstream.ascript(tokens=["Fine."])
    context = await context_for(browser, server.url, user)
    home = await live_page(context, f"{server.url}/")
    rooms = await live_page(context, f"{server.url}/chat/")
    conversations = home.get_by_test_id("dash-conversations").locator("li")
    await expect(conversations.first).to_contain_text("Newer question")
    await expect(home.get_by_test_id("dash-jobs").locator("li")).to_have_count(0)
    await expect(home.get_by_text("Nothing running.")).to_be_visible()

    # bob mentions alice in Lobby: a notification and an unread message, on both pages.
    bob = await (await context_for(browser, server.url, other_user)).new_page()
    await bob.goto(f"{server.url}/chat/{lobby.slug}/")
    await expect_state(bob, "live")
    await send(bob, "@alice the deploy is done")
    await expect(message(bob, "the deploy is done")).to_have_count(1)
    latest = home.get_by_test_id("dash-notifications").locator("li").first
    await expect(latest).to_contain_text("bob mentioned you in #lobby", timeout=LIVE_MS)
    await expect(latest).to_have_class("is-unread")
    for page in (home, rooms):
        badge = page.locator('[data-room-unread="lobby"]')
        await expect(badge).to_have_text("1 unread", timeout=LIVE_MS)

    # A question in the older conversation moves it to the top.
    ask = await context.new_page()
    await ask.goto(f"{server.url}/assistant/{older.pk}/")
    await expect(ask.get_by_test_id("assistant")).to_have_attribute("data-assistant-state", "live")
    await ask.get_by_label("Your question").fill("How are you?")
    await ask.get_by_label("Your question").press("Enter")
    # (Its title is now the question's, as the assistant's own list shows it.)
    await expect(conversations.first).to_have_attribute(
        "data-conversation-id", str(older.pk), timeout=LIVE_MS
    )
    await expect(conversations.first.get_by_role("link", name="How are you?")).to_have_attribute(
        "href", re.compile(rf"/assistant/{older.pk}/$")
    )
    await expect(conversations).to_have_count(2)  # moved, not copied

    # An export queued (no worker runs here), then cancelled, from the jobs page.
    await ask.goto(f"{server.url}/jobs/")
    await ask.get_by_test_id("export-notifications").click()
    job = home.get_by_test_id("dash-jobs").locator("li")
    await expect(job).to_have_count(1, timeout=LIVE_MS)
    await expect(job).to_contain_text("Queued")
    await expect(home.get_by_text("Nothing running.")).to_be_hidden()
    await ask.get_by_role("button", name="Cancel").click()
    await expect(job).to_contain_text("Cancelled", timeout=LIVE_MS)

    for page in (home, rooms):
        assert await page.evaluate("window.notReloaded === true")  # the same pages, live
