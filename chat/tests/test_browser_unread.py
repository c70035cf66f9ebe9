"""Unread counts live in Chromium: someone posts in a room, and the header's Chat count of
a member on another page goes up without a reload (``event: chat-unread``)."""

import pytest
from asgiref.sync import sync_to_async
from playwright.async_api import expect

from chat import services
from chat.tests.factories import add_messages
from chat.tests.test_browser import expect_state, logged_in_context, message, send

pytestmark = [pytest.mark.browser, pytest.mark.live_server]

#: Within the stream's coalescing (a second) and a delivery, with room for a slow machine.
LIVE_MS = 10_000


def two_rooms(user, other_user):
    """Lobby with one unread message for alice (``user``), and Ops, both with bob."""
    lobby = services.room_create(creator=other_user, name="Lobby", slug="lobby")
    ops = services.room_create(creator=other_user, name="Ops", slug="ops")
    for room in (lobby, ops):
        services.membership_add(room=room, user=user)
    add_messages(lobby, other_user, 1, body="Welcome aboard!")
    return lobby, ops


async def test_the_header_count_and_the_room_badges_go_up_when_someone_posts(
    browser, live_server_asgi, user, other_user
):
    lobby, ops = await sync_to_async(two_rooms)(user, other_user)
    alice = await (await logged_in_context(browser, live_server_asgi, user)).new_page()
    await alice.goto(f"{live_server_asgi.url}/notifications/")
    await expect(alice.locator("body")).to_have_attribute("data-notifications-state", "live")
    count = alice.get_by_test_id("nav-chat-unread")
    await expect(count).to_have_text("1 unread")
    await alice.evaluate("window.notReloaded = true")

    bob = await (await logged_in_context(browser, live_server_asgi, other_user)).new_page()
    await bob.goto(f"{live_server_asgi.url}/chat/{ops.slug}/")
    await expect_state(bob, "live")
    await send(bob, "Standup in five")
    await expect(message(bob, "Standup in five")).to_have_count(1)

    await expect(count).to_have_text("2 unread", timeout=LIVE_MS)
    assert await alice.evaluate("window.notReloaded === true")  # the same page, live

    # In Lobby, the sidebar shows Ops' message; reading Lobby takes its one off the header.
    await alice.goto(f"{live_server_asgi.url}/chat/{lobby.slug}/")
    await expect_state(alice, "live")
    ops_badge = alice.locator('[data-room-unread="ops"]')
    await expect(ops_badge).to_have_text("1 unread")
    await expect(count).to_have_text("1 unread", timeout=LIVE_MS)
    await send(bob, "Who is in?")
    await expect(ops_badge).to_have_text("2 unread", timeout=LIVE_MS)
    await expect(count).to_have_text("2 unread", timeout=LIVE_MS)
