"""The room's layout in Chromium with a real history: the composer stays on screen, and a
message that arrives while the reader is scrolled up shows "New messages" instead of
moving what they read."""

import re

import pytest
from asgiref.sync import sync_to_async
from playwright.async_api import expect

from chat import services
from chat.tests.factories import add_messages
from chat.tests.test_browser import expect_state, messages, send
from streamsite.testing.browser import context_for

pytestmark = [pytest.mark.browser, pytest.mark.live_server]

VIEWPORTS = {"wide": {"width": 1280, "height": 800}, "narrow": {"width": 360, "height": 740}}


def busy_room(user, other_user):
    """A room of alice's and bob's with 200 messages of bob's."""
    room = services.room_create(creator=user, name="Busy", slug="busy")
    services.membership_add(room=room, user=other_user)
    add_messages(room, other_user, 200, body="An older message\nwith two lines.")
    return room


async def open_busy_room(browser, server, user, room, viewport):
    context = await context_for(browser, server.url, user, viewport=viewport)
    page = await context.new_page()
    await page.goto(f"{server.url}/chat/{room.slug}/")
    await expect_state(page, "live")
    return page


async def scroll_top(page) -> float:
    return await messages(page).evaluate("list => list.scrollTop")


async def at_bottom(page) -> bool:
    return await messages(page).evaluate(
        "list => list.scrollHeight - list.scrollTop - list.clientHeight <= 2"
    )


@pytest.mark.parametrize("size", list(VIEWPORTS))
async def test_a_new_message_while_scrolled_up_shows_the_marker_not_a_jump(
    browser, live_server_asgi, user, other_user, size
):
    room = await sync_to_async(busy_room)(user, other_user)
    alice = await open_busy_room(browser, live_server_asgi, user, room, VIEWPORTS[size])
    bob = await open_busy_room(browser, live_server_asgi, other_user, room, VIEWPORTS["wide"])
    composer = alice.get_by_role("textbox", name="Message")
    marker = alice.get_by_test_id("chat-new-marker")

    # The latest messages are shown, the composer below them, both on screen.
    await expect(composer).to_be_in_viewport()
    assert await at_bottom(alice)
    await expect(marker).to_be_hidden()

    # Scrolled up (not to the very top, which loads older messages), reading.
    await messages(alice).evaluate("list => { list.scrollTop = list.scrollHeight / 3; }")
    await alice.wait_for_function(
        "() => document.querySelector('[data-chat-messages]').scrollTop > 0"
    )
    reading = await scroll_top(alice)
    await send(bob, "Did you see this?")

    await expect(messages(alice).locator("li.chat-message").last).to_contain_text(
        "Did you see this?"
    )
    await expect(marker).to_be_visible()
    assert await scroll_top(alice) == reading  # the view did not move
    await expect(composer).to_be_in_viewport()

    # The marker takes the reader down to the new message, and goes.
    await marker.click()
    await expect(marker).to_be_hidden()
    await expect(messages(alice).locator("li.chat-message").last).to_be_in_viewport()
    assert await at_bottom(alice)

    # At the bottom, the next message scrolls into view with no marker.
    await send(bob, "And another one")
    last = messages(alice).locator("li.chat-message").last
    await expect(last).to_contain_text("And another one")
    await expect(last).to_be_in_viewport()
    await expect(marker).to_be_hidden()


async def test_consecutive_messages_are_grouped_under_one_author(
    browser, live_server_asgi, user, other_user
):
    """bob's 200 messages: one author line at the top of the page's run, not one each; a
    message of alice's starts a group of its own, live."""
    room = await sync_to_async(busy_room)(user, other_user)
    alice = await open_busy_room(browser, live_server_asgi, user, room, VIEWPORTS["wide"])
    shown = messages(alice).locator("li.chat-message")
    await expect(shown).to_have_count(50)
    await expect(messages(alice).locator("li.chat-message:not(.is-continued)")).to_have_count(1)
    await expect(messages(alice).locator("li.chat-day")).to_have_count(1)
    await send(alice, "Mine")
    mine = messages(alice).locator("li.is-sent")
    await expect(mine).to_have_count(1)
    await expect(mine).not_to_have_class(re.compile(r"\bis-continued\b"))
    await expect(messages(alice).locator("li.chat-day")).to_have_count(1)
