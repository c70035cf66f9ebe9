"""Send events to the channel layer once the database has what they announce.

The database is the source of truth and the channel layer is a lossy doorbell: an event
published before its row commits can reach a client that then cannot read the row, and an
event lost on the way (capacity, expiry, a Redis restart) is recovered from the database by
id. So services publish only through ``publish_on_commit``.
"""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)


def publish_on_commit(group: str, event: dict, *, using: str | None = None) -> None:
    """Send ``event`` to ``group`` after the current transaction commits.

    Outside a transaction it is sent at once. A failed send is logged and does not fail the
    request: what it announced is committed and clients catch up from the database.
    ``event`` must hold JSON-safe primitives only (Redis layers msgpack-encode it).
    """

    def publish_after_commit() -> None:
        try:
            # ``publish`` is looked up now, so tests can wrap it (``capture_published``).
            publish(group, event)
        except Exception:
            logger.exception(
                "publishing %r to %s failed; clients will catch up from the database",
                event.get("type"),
                group,
            )

    transaction.on_commit(publish_after_commit, using=using)


def publish(group: str, event: dict) -> None:
    """Send ``event`` to ``group`` now, from synchronous code."""
    async_to_sync(get_channel_layer().group_send)(group, event)
