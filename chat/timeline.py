"""How a room's messages are laid out: a separator where the day changes, and the author
and time shown once for consecutive messages of one author (as Slack and Zulip do).

The page renders these marks so it reads the same without JavaScript; the browser client
(chat-timeline.js) applies the same rules, in the reader's time zone, as messages arrive.
"""

import datetime
from collections.abc import Sequence

from django.utils import timezone
from django.utils.formats import date_format

#: A message continues the previous one's group when the same author wrote it this soon after.
GROUP_WITHIN = datetime.timedelta(minutes=5)


def day_label(day: datetime.date, today: datetime.date) -> str:
    """ "Today", "Yesterday", or the date written out ("Monday 30 November 2026")."""
    if day == today:
        return "Today"
    if day == today - datetime.timedelta(days=1):
        return "Yesterday"
    return date_format(day, "l j F Y")


def mark_timeline(messages: Sequence, *, now: datetime.datetime | None = None) -> None:
    """Set ``day_label`` (None unless a new day starts at it) and ``continues`` (True when it
    belongs to the previous message's group) on each message, oldest first.

    The first message of a page always gets its day: a page of older history starts with one.
    """
    today = timezone.localdate(now)
    previous = None
    for message in messages:
        day = timezone.localdate(message.created_at)
        new_day = previous is None or day != timezone.localdate(previous.created_at)
        message.day_label = day_label(day, today) if new_day else None
        message.continues = (
            not new_day
            and previous.author_id == message.author_id
            and not previous.is_assistant_answer
            and not message.is_assistant_answer
            and message.created_at - previous.created_at <= GROUP_WITHIN
        )
        previous = message
