"""A room's timeline in Chromium: times relative to now and kept current, the absolute time
still in each <time>; day separators and author groups in the live timeline too (a message
arriving over the socket, a page of older history loaded into the page).

The browser runs in UTC, like the servers: the days the page draws are the test's to say.
"""

import datetime
import re

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from playwright.async_api import expect

from chat import services
from chat.models import Message
from chat.tests.factories import add_messages
from chat.tests.test_browser import expect_state, messages, send
from streamsite.testing.browser import context_for

pytestmark = [pytest.mark.browser, pytest.mark.live_server]


@pytest.fixture
def server(live_servers, transactional_db):
    """What the page draws does not depend on the server: one kind (daphne) is enough."""
    return live_servers("daphne")


BROWSER = {"locale": "en-US", "timezone_id": "UTC"}


def room_with_history(user, other_user, **ages: tuple[int, datetime.timedelta]):
    """A room of alice's and bob's; ``ages``: name -> (count, age) of bob's messages, in
    the order given (oldest first)."""
    room = services.room_create(creator=user, name="Talk", slug="talk")
    services.membership_add(room=room, user=other_user)
    now = timezone.now()
    for count, age in ages.values():
        add_messages(room, other_user, count, created_at=now - age)
    return room


async def open_talk(browser, server, user, *, clock: bool = False):
    context = await context_for(browser, server.url, user, **BROWSER)
    page = await context.new_page()
    if clock:
        await page.clock.install()  # time flows as usual until the test moves it on
    await page.goto(f"{server.url}/chat/talk/")
    await expect_state(page, "live")
    return page


def times(page):
    return messages(page).locator("li.chat-message > time")


async def test_times_read_relative_to_now_and_move_on_with_the_clock(
    browser, server, user, other_user
):
    room = await sync_to_async(room_with_history)(
        user,
        other_user,
        old=(1, datetime.timedelta(days=3)),
        recent=(1, datetime.timedelta(minutes=3)),
    )
    alice = await open_talk(browser, server, user, clock=True)
    old, recent = times(alice).nth(0), times(alice).nth(1)

    await expect(recent).to_have_text("3 min. ago")
    await expect(old).to_have_text(re.compile(r"^\d\d:\d\d$"))  # its day's separator says when
    # The absolute time stays: machine-readable, and in the title for a pointer or a reader.
    stored = await sync_to_async(lambda: list(Message.objects.filter(room=room).order_by("id")))()
    for time, message in ((old, stored[0]), (recent, stored[1])):
        shown = datetime.datetime.fromisoformat(await time.get_attribute("datetime"))
        assert shown == message.created_at
        await expect(time).to_have_attribute("title", re.compile(r"\d{4}"))

    # A message sent now reads "now", under a "Today" separator of its own.
    await send(alice, "Fresh")
    await expect(times(alice).nth(2)).to_have_text("now")
    await expect(messages(alice).locator("li.chat-day")).to_have_text(
        [re.compile(r"\w+day \d+ \w+ \d{4}|\w+day, \w+ \d+, \d{4}"), "Today"]
    )

    await alice.clock.fast_forward("02:00")
    await expect(recent).to_have_text("5 min. ago")
    await alice.clock.fast_forward("01:00:00")
    await expect(recent).to_have_text("1 hr. ago")


async def test_a_live_message_after_yesterday_starts_today_and_a_group_of_its_own(
    browser, server, user, other_user
):
    await sync_to_async(room_with_history)(
        user, other_user, yesterday=(3, datetime.timedelta(days=1))
    )
    alice = await open_talk(browser, server, user)
    days = messages(alice).locator("li.chat-day")
    await expect(days).to_have_text(["Yesterday"])
    starts = messages(alice).locator("li.chat-message:not(.is-continued)")
    await expect(starts).to_have_count(1)  # bob's three: one author line

    bob = await open_talk(browser, server, other_user)
    await send(bob, "Good morning")
    await expect(messages(alice).locator("li.chat-message")).to_have_count(4)
    await expect(days).to_have_text(["Yesterday", "Today"])
    # bob again, but on a new day: his name and time are shown again.
    await expect(starts).to_have_count(2)
    await expect(starts.last).to_contain_text("Good morning")
    await expect(starts.last.locator(".chat-author")).to_be_visible()

    await send(bob, "Anyone?")  # the same author minutes later: continues the group
    await expect(messages(alice).locator("li.chat-message")).to_have_count(5)
    await expect(messages(alice).locator("li.chat-message").last).to_have_class(
        re.compile(r"\bis-continued\b")
    )
    await expect(starts).to_have_count(2)


async def test_older_pages_join_the_days_and_groups_of_the_page_without_a_seam(
    browser, server, user, other_user
):
    """60 messages: 30 from two days ago, 30 from an hour ago. The page shows the last 50;
    the 10 loaded above them belong to the same day and group as the 20 already shown."""
    await sync_to_async(room_with_history)(
        user,
        other_user,
        before=(30, datetime.timedelta(days=2)),
        today=(30, datetime.timedelta(hours=1)),
    )
    alice = await open_talk(browser, server, user)
    shown = messages(alice).locator("li.chat-message")
    days = messages(alice).locator("li.chat-day")
    starts = messages(alice).locator("li.chat-message:not(.is-continued)")
    await expect(shown).to_have_count(50)
    await expect(days).to_have_count(2)
    await expect(starts).to_have_count(2)

    await alice.get_by_role("button", name="Load older messages").click()

    await expect(shown).to_have_count(60)
    await expect(days).to_have_count(2)  # not a third where the pages meet
    await expect(starts).to_have_count(2)  # the first shown before is now in the group above
    await expect(shown.nth(0)).not_to_have_class(re.compile(r"\bis-continued\b"))
    await expect(shown.nth(10)).to_have_class(re.compile(r"\bis-continued\b"))
    await expect(shown.nth(30).locator("time")).to_have_text("1 hr. ago")
