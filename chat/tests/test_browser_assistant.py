"""The assistant in a chat room, in a real Chromium against a real server (chat-answers.js).

The server is the production one (uvicorn) and its assistant asks the fake upstream (a
process of its own), so what the pages show is scripted, token by token.
"""

import pytest
from asgiref.sync import sync_to_async
from playwright.async_api import expect

from assistant.models import Answer
from chat import room_assistant, services
from chat.tests.test_browser import DELIVERY_MS, messages, open_room, send

pytestmark = [pytest.mark.browser, pytest.mark.live_server]

MARKUP = "<img src=x onerror=alert(1)>"
TOKENS = ["Streams ", "arrive ", "in order", ": ", MARKUP, " é😀", " done."]


@pytest.fixture
def server(assistant_servers, transactional_db, fake_upstream):
    """The session's production server pointed at the (reset) fake upstream."""
    return assistant_servers("uvicorn")


@pytest.fixture
def lobby(user, other_user):
    """A public room with the assistant, created by alice (its moderator); bob is a member."""
    room = services.room_create(creator=user, name="Lobby", slug="lobby")
    room_assistant.room_assistant_set(user=user, room=room, enabled=True)
    services.membership_add(room=room, user=other_user)
    return room


def answer(page):
    return messages(page).locator("li.is-assistant")


async def test_both_users_see_the_answer_stream_in_as_text_and_complete(
    browser, server, fake_upstream, lobby, user, other_user
):
    await fake_upstream.ascript(tokens=TOKENS, token_delay=0.15)
    dialogs: list[str] = []
    alice = await open_room(browser, server, user, lobby, dialogs=dialogs)
    bob = await open_room(browser, server, other_user, lobby, dialogs=dialogs)
    await expect(alice.get_by_test_id("chat-assistant-hint")).to_be_visible()

    await send(alice, "@assistant how do streams work?")

    for page in (alice, bob):
        item = answer(page)
        await expect(item).to_have_count(1, timeout=DELIVERY_MS)
        await expect(item.locator(".chat-author")).to_have_text("assistant")
        await expect(item.locator(".chat-asked-by")).to_have_text("asked by alice")
    # Seen while it is written: part of the text, "writing…", and Stop for who asked only.
    await expect(answer(bob).locator("[data-chat-body]")).to_contain_text(
        "Streams arrive", timeout=DELIVERY_MS
    )
    await expect(answer(bob)).to_have_attribute("data-status", "streaming")
    await expect(answer(bob).locator("[data-chat-answer-status]")).to_have_text("writing…")
    await expect(answer(alice).get_by_role("button", name="Stop")).to_be_visible()
    await expect(answer(bob).get_by_role("button", name="Stop")).to_have_count(0)

    text = "".join(TOKENS)
    for page in (alice, bob):
        item = answer(page)
        await expect(item).to_have_attribute("data-status", "complete", timeout=DELIVERY_MS)
        await expect(item.locator("[data-chat-body]")).to_have_text(text)
        await expect(item).to_have_attribute("data-position", str(len(text)))
        await expect(item.get_by_role("button", name="Stop")).to_have_count(0)
        # The markup in the answer stayed text: nothing was made of it, nothing ran.
        assert await messages(page).locator("img").count() == 0
    assert dialogs == []
    stored = await Answer.objects.aget()
    assert (stored.status, stored.text) == ("complete", text)


async def test_who_asked_stops_the_answer_and_every_page_keeps_the_same_text(
    browser, server, fake_upstream, lobby, user, other_user
):
    await fake_upstream.ascript(tokens=TOKENS, stall_after=3, stall_seconds=None)
    alice = await open_room(browser, server, user, lobby)
    bob = await open_room(browser, server, other_user, lobby)
    await send(alice, "@assistant keep going")
    shown = "".join(TOKENS[:3])
    await expect(answer(alice).locator("[data-chat-body]")).to_have_text(shown, timeout=DELIVERY_MS)

    await answer(alice).get_by_role("button", name="Stop").click()

    for page in (alice, bob):
        item = answer(page)
        await expect(item).to_have_attribute("data-status", "stopped", timeout=DELIVERY_MS)
        await expect(item.locator("[data-chat-answer-status]")).to_have_text("stopped")
        await expect(item.locator("[data-chat-body]")).to_have_text(shown)
    stored = await sync_to_async(Answer.objects.get)()
    assert (stored.status, stored.text) == ("stopped", shown)
    await fake_upstream.await_disconnected(0, timeout=5)
