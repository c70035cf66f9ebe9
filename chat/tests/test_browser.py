"""The chat room in a real Chromium against the real server: live, safe, and resilient.

Everything live goes through the browsers: on the embedded backend the in-memory channel
layer of the test process reaches no server, so messages are sent (and deleted) from the
pages, the way people do it. Data that only has to be on the page when it loads (history,
rooms, memberships) is committed here, in the shared database.
"""

import re

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from playwright.async_api import expect

from bench.data import create_sessions
from chat import services
from chat.models import Message
from chat.tests.factories import add_messages, post
from streamsite.testing.browser import session_cookie_for
from streamsite.testing.chat import RemoteChatSocket

pytestmark = [pytest.mark.browser, pytest.mark.live_server]

#: The promise: a message is on the other open page this soon after it is sent.
DELIVERY_MS = 3_000
#: A page that lost its server retries with backoff (up to 30 s between two attempts).
RECONNECT_MS = 40_000

PENDING = re.compile(r"\bis-pending\b")
SENT = re.compile(r"\bis-sent\b")


# Helpers ---------------------------------------------------------------------------------


@pytest.fixture
def lobby(user):
    """A public room, created by alice (who moderates it)."""
    return services.room_create(creator=user, name="Lobby", slug="lobby")


async def logged_in_context(browser, server, user, **options):
    """A fresh browser profile logged in as ``user`` on ``server``."""
    context = await browser.new_context(**options)
    context.set_default_timeout(10_000)
    await context.add_cookies([await sync_to_async(session_cookie_for)(user, server.url)])
    return context


async def open_room(browser, server, user, room, *, dialogs=None):
    """Open ``room`` as ``user`` in a profile of their own; wait until its socket is live."""
    context = await logged_in_context(browser, server, user)
    if dialogs is not None:
        context.on("dialog", lambda dialog: dialogs.append(dialog.message))
    page = await context.new_page()
    await page.goto(f"{server.url}/chat/{room.slug}/")
    await expect_state(page, "live")
    return page


async def expect_state(page, state: str, within_ms: float = 10_000):
    await expect(page.get_by_test_id("chat")).to_have_attribute(
        "data-chat-state", state, timeout=within_ms
    )


def messages(page):
    return page.get_by_test_id("chat-messages")


def message(page, text: str):
    """The message items of the page whose text contains ``text``."""
    return messages(page).locator("li.chat-message").filter(has_text=text)


def online(page):
    return page.get_by_test_id("chat-presence").locator("li")


async def send(page, text: str) -> None:
    """Type a message and press Enter (the form's own submit, taken over by the client)."""
    await page.get_by_label("Message", exact=True).fill(text)
    await page.get_by_label("Message", exact=True).press("Enter")


async def shown_ids(page) -> list[int]:
    return [
        int(value)
        for value in await messages(page)
        .locator("li[data-message-id]")
        .evaluate_all("items => items.map(item => item.dataset.messageId)")
    ]


# Chatting live ---------------------------------------------------------------------------


async def test_two_users_chat_live_and_see_each_other_online(
    browser, live_server_asgi, lobby, user, other_user
):
    alice = await open_room(browser, live_server_asgi, user, lobby)
    bob = await open_room(browser, live_server_asgi, other_user, lobby)
    await expect(online(alice)).to_have_text(["alice", "bob"], timeout=DELIVERY_MS)
    await expect(online(bob)).to_have_text(["alice", "bob"])

    await send(alice, "Hi Bob")
    await expect(message(bob, "Hi Bob")).to_have_count(1, timeout=DELIVERY_MS)
    await expect(message(bob, "Hi Bob").locator(".chat-author")).to_have_text("alice")
    sent = message(alice, "Hi Bob")
    await expect(sent).to_have_class(SENT, timeout=DELIVERY_MS)
    await expect(sent).to_have_count(1)

    # Bob types: Alice is told, then reads his reply.
    await bob.get_by_label("Message", exact=True).press_sequentially("Hel")
    await expect(alice.get_by_test_id("chat-typing")).to_have_text(
        "bob is typing…", timeout=DELIVERY_MS
    )
    await bob.get_by_label("Message", exact=True).fill("Hello Alice\nHow are you?")
    await bob.get_by_role("button", name="Send").click()
    reply = message(alice, "Hello Alice")
    await expect(reply).to_have_count(1, timeout=DELIVERY_MS)
    await expect(reply.locator("[data-chat-body]")).to_have_text("Hello Alice\nHow are you?")
    await expect(alice.get_by_test_id("chat-typing")).to_have_text("")

    # No page load: the same pages, and each message stored once, in order.
    assert alice.url == bob.url == f"{live_server_asgi.url}/chat/lobby/"
    stored = [
        m async for m in Message.objects.filter(room=lobby).order_by("id").values("id", "body")
    ]
    assert [m["body"] for m in stored] == ["Hi Bob", "Hello Alice\nHow are you?"]
    assert await shown_ids(alice) == await shown_ids(bob) == [m["id"] for m in stored]


async def test_a_message_that_is_html_shows_as_text_and_runs_nothing(
    browser, live_server_asgi, lobby, user, other_user
):
    markup = "<img src=x onerror=alert(1)>"
    dialogs: list[str] = []
    alice = await open_room(browser, live_server_asgi, user, lobby, dialogs=dialogs)
    bob = await open_room(browser, live_server_asgi, other_user, lobby, dialogs=dialogs)

    await send(alice, markup)

    for page in (bob, alice):
        item = message(page, markup)
        await expect(item).to_have_count(1, timeout=DELIVERY_MS)
        await expect(item.locator("[data-chat-body]")).to_have_text(markup)
        # The markup became text: no element was made from it, so nothing could run.
        assert await messages(page).locator("img").count() == 0
    await expect(message(alice, markup)).to_have_class(SENT)
    assert dialogs == []


async def test_a_deleted_message_loses_its_text_on_every_open_page(
    browser, live_server_asgi, lobby, user, other_user
):
    alice = await open_room(browser, live_server_asgi, user, lobby)  # the room's moderator
    bob = await open_room(browser, live_server_asgi, other_user, lobby)
    await send(bob, "regrettable words")
    await expect(message(alice, "regrettable")).to_have_count(1, timeout=DELIVERY_MS)

    # The moderator's Delete is the plain form (also on messages that arrived live).
    await message(alice, "regrettable").get_by_role("button", name="Delete").click()

    gone = messages(bob).locator("li.is-deleted")
    await expect(gone).to_have_count(1, timeout=DELIVERY_MS)
    await expect(gone).to_contain_text("message deleted")
    await expect(message(bob, "regrettable")).to_have_count(0)


# Presence --------------------------------------------------------------------------------


async def test_presence_drops_a_user_who_closes_the_page(
    browser, live_server_asgi, lobby, user, other_user
):
    alice = await open_room(browser, live_server_asgi, user, lobby)
    bob = await open_room(browser, live_server_asgi, other_user, lobby)
    await expect(online(alice)).to_have_text(["alice", "bob"], timeout=DELIVERY_MS)
    await expect(alice.get_by_test_id("chat-online-count")).to_have_text("2 online")

    await bob.close()

    await expect(online(alice)).to_have_text(["alice"], timeout=DELIVERY_MS)
    await expect(alice.get_by_test_id("chat-online-count")).to_have_text("1 online")


async def test_a_big_room_lists_the_first_names_and_shows_more_on_request(
    browser, live_server_asgi, lobby, user, password_hash
):
    """120 people online: the page lists the first 100 with the count; Show more lists
    the rest."""

    def create_crowd() -> list[str]:
        model = get_user_model()
        crowd = model.objects.bulk_create(
            [model(username=f"guest{n:03d}", password=password_hash) for n in range(119)]
        )
        return create_sessions([member.pk for member in crowd])

    sessions = await sync_to_async(create_crowd)()
    url = f"{live_server_asgi.ws_url}/ws/chat/lobby/"
    sockets = [RemoteChatSocket(url, {settings.SESSION_COOKIE_NAME: key}) for key in sessions]
    try:
        for socket in sockets:
            await socket.connect()
            await socket.joined()
        alice = await open_room(browser, live_server_asgi, user, lobby)
        everyone = sorted([*(f"guest{n:03d}" for n in range(119)), "alice"])
        await expect(online(alice)).to_have_text(everyone[:100], timeout=DELIVERY_MS)
        await expect(alice.get_by_test_id("chat-online-count")).to_have_text("120 online")
        await alice.get_by_test_id("chat-presence").get_by_role("button", name="Show more").click()
        await expect(online(alice)).to_have_text(everyone, timeout=DELIVERY_MS)
        await expect(
            alice.get_by_test_id("chat-presence").get_by_role("button", name="Show more")
        ).to_be_hidden()
    finally:
        for socket in sockets:
            await socket.disconnect()


# Losing the server -----------------------------------------------------------------------


@pytest.mark.timeout(150)
@pytest.mark.parametrize("kind", ["daphne", "uvicorn"])
async def test_a_message_written_offline_is_sent_once_when_the_server_is_back(
    browser, live_server_factory, lobby, user, other_user, kind
):
    server = await sync_to_async(live_server_factory)(kind)
    alice = await open_room(browser, server, user, lobby)
    bob = await open_room(browser, server, other_user, lobby)

    await sync_to_async(server.stop)()
    await expect_state(alice, "offline")

    await send(alice, "Written while offline")
    pending = message(alice, "Written while offline")
    await expect(pending).to_have_class(PENDING)
    await expect(pending).to_contain_text("sending…")
    assert await pending.get_attribute("data-message-id") is None

    await sync_to_async(server.start)()

    await expect_state(alice, "live", within_ms=RECONNECT_MS)
    await expect(pending).to_have_class(SENT, timeout=DELIVERY_MS)
    await expect(pending).not_to_contain_text("sending…")
    stored = [m async for m in Message.objects.filter(body="Written while offline")]
    assert len(stored) == 1
    await expect(pending).to_have_attribute("data-message-id", str(stored[0].pk))
    await expect_state(bob, "live", within_ms=RECONNECT_MS)
    await expect(message(bob, "Written while offline")).to_have_count(1, timeout=DELIVERY_MS)
    await expect(message(bob, "Written while offline")).to_have_attribute(
        "data-message-id", str(stored[0].pk)
    )
    # Both pages still chat, each message once.
    await send(bob, "Welcome back")
    await expect(message(alice, "Welcome back")).to_have_count(1, timeout=DELIVERY_MS)
    assert await Message.objects.filter(room=lobby).acount() == 2


async def test_a_user_removed_from_a_private_room_is_told_and_stops_retrying(
    browser, live_server_asgi, user, other_user
):
    room = await sync_to_async(services.room_create)(
        creator=user, name="Secret", slug="secret", is_private=True
    )
    await sync_to_async(services.membership_add)(room=room, user=other_user)
    alice = await open_room(browser, live_server_asgi, user, room)
    bob = await open_room(browser, live_server_asgi, other_user, room)

    members = alice.get_by_test_id("chat-members")
    await members.locator("li").filter(has_text="bob").get_by_role("button", name="Remove").click()

    await expect_state(bob, "stopped", within_ms=DELIVERY_MS)
    await expect(bob.get_by_test_id("chat-status")).to_have_text(
        "You no longer have access to this room."
    )


# Scrolling back, and without JavaScript ----------------------------------------------------


async def test_older_messages_load_into_the_page_in_order(
    browser, live_server_asgi, lobby, user, other_user
):
    await sync_to_async(add_messages)(lobby, other_user, 60)
    alice = await open_room(browser, live_server_asgi, user, lobby)
    await expect(messages(alice).locator("li.chat-message")).to_have_count(50)
    older = alice.get_by_role("button", name="Load older messages")

    await older.click()

    await expect(messages(alice).locator("li.chat-message")).to_have_count(60)
    await expect(older).to_be_hidden()
    ids = await shown_ids(alice)
    expected = [m.pk async for m in Message.objects.filter(room=lobby).order_by("id")]
    assert ids == expected


async def test_the_room_reads_and_posts_without_javascript(
    browser, live_server_asgi, lobby, user, other_user
):
    earlier = await sync_to_async(post)(other_user, lobby, "Rendered by the server")
    context = await logged_in_context(browser, live_server_asgi, user, java_script_enabled=False)
    page = await context.new_page()
    await page.goto(f"{live_server_asgi.url}/chat/lobby/")
    await expect(message(page, "Rendered by the server")).to_have_attribute(
        "data-message-id", str(earlier.pk)
    )
    await expect(page.get_by_test_id("chat-status")).to_be_hidden()

    await page.get_by_label("Message", exact=True).fill("Plain HTML works")
    await page.get_by_role("button", name="Send").click()

    await page.wait_for_url(re.compile(r"/chat/lobby/#message-\d+$"))
    await expect(message(page, "Plain HTML works")).to_have_count(1)
    assert await Message.objects.filter(body="Plain HTML works").acount() == 1


# Refusals ----------------------------------------------------------------------------------


async def test_a_message_the_server_refuses_shows_as_failed_with_the_reason(
    browser, live_server_asgi, lobby, user
):
    alice = await open_room(browser, live_server_asgi, user, lobby)
    box = alice.get_by_label("Message", exact=True)
    await box.evaluate("textarea => textarea.removeAttribute('maxlength')")
    await send(alice, "x" * 4001)

    failed = messages(alice).locator("li.is-failed")
    await expect(failed).to_have_count(1, timeout=DELIVERY_MS)
    await expect(failed).to_contain_text("Not sent:")
    await expect(failed).not_to_have_class(PENDING)
    assert await Message.objects.filter(room=lobby).acount() == 0

    await failed.get_by_role("button", name="Discard").click()
    await expect(failed).to_have_count(0)


@pytest.mark.timeout(90)
async def test_a_rate_limited_message_stays_pending_and_is_sent_later(
    browser, live_server_asgi, lobby, user
):
    """Over CHAT_RATE_LIMIT_MESSAGES (20) in 10 s: the 21st waits retry_after, then goes."""
    alice = await open_room(browser, live_server_asgi, user, lobby)
    for number in range(1, 22):
        await send(alice, f"burst {number:02}")

    late = message(alice, "burst 21")
    await expect(late).to_contain_text("slow down", timeout=DELIVERY_MS)
    await expect(late).to_have_class(PENDING)
    await expect(late).to_have_class(SENT, timeout=15_000)
    await expect(messages(alice).locator("li.is-sent")).to_have_count(21)
    assert await Message.objects.filter(room=lobby).acount() == 21
    assert await shown_ids(alice) == sorted(await shown_ids(alice))


async def test_a_mention_lights_up_the_mentioned_user_s_bell(
    browser, live_server_asgi, lobby, user, other_user
):
    """``@bob`` in a message notifies bob through the notifications service: the bell on
    his open page counts it, live."""
    await sync_to_async(services.membership_add)(room=lobby, user=other_user)
    alice = await open_room(browser, live_server_asgi, user, lobby)
    bob = await open_room(browser, live_server_asgi, other_user, lobby)
    bell = bob.get_by_test_id("bell-count")
    await expect(bell).to_have_text(re.compile(r"^0?$"))
    await send(alice, "@bob have a look")
    await expect(message(bob, "have a look")).to_have_count(1, timeout=DELIVERY_MS)
    await expect(bell).to_have_text("1", timeout=DELIVERY_MS)
