"""The channel-layer messages that carry events to hubs (``streamsite.streaming.hub``).

Publishers build them, every hub takes them apart: one format, in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

__all__ = [
    "BATCH_CACHE",
    "HUB_GROUP",
    "RESYNC_ALL_KEYS",
    "batch_message",
    "event_message",
    "expand_message",
    "resync_message",
]

logger = logging.getLogger(__name__)

#: The wall-clock time (``time.time()``, a float: JSON- and msgpack-safe) a message was
#: published, set on the message around the event, never in it: the hub measures
#: ``streamsite_delivery_latency_seconds`` from it and clients never see it.
PUBLISHED_AT = "at"


def message_app(message: dict) -> str:
    """The app a hub message belongs to ("notifications", "chat"...), for a metric label.

    The first part of its (first) key: keys are built by each app's one helper, so the
    values are few and fixed.
    """
    key = message.get("key")
    if key is None:
        keys = message.get("keys")
        key = keys[0] if keys else ""
    return key.partition(".")[0] or "unknown"


#: Every hub is a member of this group; batches for many keys are sent to it once.
HUB_GROUP = "streamsite.hubs"


def event_message(key: str, event: dict) -> dict:
    """The channel-layer message carrying ``event`` for ``key`` (sent to ``key``'s group)."""
    return {"type": "hub.event", "key": key, "event": event}


def batch_message(keys: list[str], base: dict, fields: dict[str, list]) -> dict:
    """One message carrying an event per key (sent once, to ``HUB_GROUP``).

    Key ``i`` gets ``{**base, name: values[i] for name, values in fields.items()}``: the
    shared part travels once, so a batch for thousands of keys stays small.
    """
    for name, values in fields.items():
        if len(values) != len(keys):
            raise ValueError(f"field {name!r} has {len(values)} values for {len(keys)} keys")
    return {"type": "hub.batch", "keys": keys, "base": base, "fields": fields}


#: More keys than this in one ``resync_message`` and it asks for every key instead.
RESYNC_ALL_KEYS = 10_000


def resync_message(keys: list[str] | None) -> dict:
    """The message telling every hub that events for ``keys`` may be lost (sent to
    ``HUB_GROUP``): their subscribers re-read the database. ``None`` means every key."""
    if keys is not None and len(keys) > RESYNC_ALL_KEYS:
        keys = None
    return {"type": "hub.resync", "keys": keys}


#: With ``expand_message(..., shared=True)``, the events of one batch carry, under this
#: name, one dict they share: subscribers cache there what they build from the batch's
#: shared fields (the encoded part of a notification all recipients get alike), so it is
#: built once per batch and process instead of once per recipient.
BATCH_CACHE = "_batch_cache"


def expand_message(message: dict, wanted=None, *, shared=False) -> Iterator[tuple[str, dict]]:
    """Yield ``(key, event)`` for each event in a hub message, for keys ``wanted(key)``."""
    kind = message.get("type")
    if kind == "hub.event":
        if wanted is None or wanted(message["key"]):
            yield message["key"], message["event"]
    elif kind == "hub.batch":
        base, fields = message["base"], message["fields"]
        if shared:
            base = {**base, BATCH_CACHE: {}}
        for index, key in enumerate(message["keys"]):
            if wanted is None or wanted(key):
                event = dict(base)
                for name, values in fields.items():
                    event[name] = values[index]
                yield key, event
    elif kind != "hub.resync":  # carries no event (the hub acts on it itself)
        logger.warning("hub ignored a message of unknown type %r", kind)
