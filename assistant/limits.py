"""The limits on answers: how many one user runs at once, and their daily token budget.

Checked before anything is stored or any upstream is called. The user's ``DailyUsage`` row
of the day is their lock: two tabs asking at once, in two processes, take it in turn, so
neither limit can be passed by racing.
"""

from __future__ import annotations

import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from assistant.models import Answer, DailyUsage


class AnswerLimitReached(Exception):
    """The user already has ``ASSISTANT_MAX_CONCURRENT`` answers running."""

    def __init__(self, running: Answer) -> None:
        super().__init__(f"answer {running.pk} is still running")
        self.running = running


class BudgetExhausted(Exception):
    """The user spent ``ASSISTANT_DAILY_TOKENS`` today; it resets at ``resets_at``."""

    def __init__(self, resets_at: datetime.datetime) -> None:
        super().__init__(f"daily token budget spent; resets at {resets_at.isoformat()}")
        self.resets_at = resets_at


def limits_check(user) -> None:
    """Take the user's lock (today's usage row) and refuse over the limits.

    Inside the transaction that stores the answer; raises ``AnswerLimitReached`` or
    ``BudgetExhausted``.
    """
    today = timezone.now().date()
    DailyUsage.objects.bulk_create([DailyUsage(user=user, day=today)], ignore_conflicts=True)
    usage = DailyUsage.objects.select_for_update().get(user=user, day=today)
    running = Answer.objects.filter(owner=user, status=Answer.Status.STREAMING).order_by("id")
    limit = settings.ASSISTANT_MAX_CONCURRENT
    found = list(running[:limit])
    if len(found) >= limit:
        raise AnswerLimitReached(found[0])
    if usage.tokens >= settings.ASSISTANT_DAILY_TOKENS:
        midnight = datetime.datetime.combine(
            today + datetime.timedelta(days=1), datetime.time(), tzinfo=datetime.UTC
        )
        raise BudgetExhausted(midnight)


def usage_add(*, user_id: int, tokens: int) -> None:
    """Count ``tokens`` against the user's budget for today.

    A user deleted meanwhile (an answer stopped because its account, and so the answer,
    went) has no budget left to count against: nothing is written.
    """
    today = timezone.now().date()
    try:
        with transaction.atomic():
            DailyUsage.objects.bulk_create(
                [DailyUsage(user_id=user_id, day=today)], ignore_conflicts=True
            )
            DailyUsage.objects.filter(user_id=user_id, day=today).update(
                tokens=F("tokens") + max(0, int(tokens)), answers=F("answers") + 1
            )
    except IntegrityError:
        if get_user_model().objects.filter(pk=user_id).exists():
            raise
