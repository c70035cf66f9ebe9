"""Day separators and grouped messages, as the room page renders them."""

import datetime
import types

from django.utils import timezone

from chat.timeline import GROUP_WITHIN, day_label, mark_timeline

NOW = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)


def message(author_id: int, at: datetime.datetime, *, assistant: bool = False):
    return types.SimpleNamespace(author_id=author_id, created_at=at, is_assistant_answer=assistant)


def test_day_labels_say_today_yesterday_or_the_date():
    today = timezone.localdate(NOW)
    assert day_label(today, today) == "Today"
    assert day_label(today - datetime.timedelta(days=1), today) == "Yesterday"
    assert day_label(datetime.date(2026, 11, 23), today) == "Monday 23 November 2026"


def test_a_new_day_starts_a_separator_and_a_new_group():
    late = datetime.datetime(2026, 11, 30, 23, 58, tzinfo=datetime.UTC)  # yesterday
    messages = [message(1, late), message(1, late + datetime.timedelta(minutes=3))]
    mark_timeline(messages, now=NOW)
    assert [m.day_label for m in messages] == ["Yesterday", "Today"]
    assert [m.continues for m in messages] == [False, False]


def test_consecutive_messages_of_one_author_are_grouped_for_a_few_minutes():
    at = NOW - datetime.timedelta(hours=1)
    messages = [
        message(1, at),
        message(1, at + datetime.timedelta(minutes=1)),  # same author, soon after
        message(2, at + datetime.timedelta(minutes=2)),  # another author
        message(
            2, at + datetime.timedelta(minutes=2) + GROUP_WITHIN + datetime.timedelta(seconds=1)
        ),
        message(2, at + datetime.timedelta(minutes=30), assistant=True),  # the assistant's answer
        message(2, at + datetime.timedelta(minutes=31)),  # after an answer: a new group
    ]
    mark_timeline(messages, now=NOW)
    assert [m.continues for m in messages] == [False, True, False, False, False, False]
    assert [m.day_label for m in messages] == ["Today", None, None, None, None, None]


def test_an_empty_page_is_fine():
    mark_timeline([], now=NOW)
