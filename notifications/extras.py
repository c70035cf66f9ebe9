"""Events other apps send on a user's notification stream (``event: job``, say).

A browser has one notification stream (shared by its tabs), so other apps' live state for
a user travels on it instead of opening connections of their own. An app sends its events
through ``notifications.services.stream_extra_publish`` and registers, in its
``AppConfig.ready``, a snapshot function that the stream calls on (re)connect: the
current state of what the user is watching, so a reload shows it at once.

Each extra event describes one thing (``key``) at one version (``seq``): a stream sends
a version only if it is newer than the last it sent for that thing, and of the versions
that arrive together it sends the latest alone (a slow reader skips intermediate values
and never falls behind). ``active`` says the thing may still change: while one is active
and the channel layer is the in-memory one (a worker in another process cannot reach this
process), the stream polls the snapshot instead (``EXTRA_POLL_SECONDS``).
"""

from collections.abc import Callable

#: A snapshot function: ``snapshot(user_id)`` -> extra events (``extra_event``), run on
#: the streams' database threads, so synchronous and short.
Snapshot = Callable[[int], list[dict]]

_snapshots: list[Snapshot] = []


def snapshot_register(snapshot: Snapshot) -> None:
    """Have every notification stream send ``snapshot(user_id)`` on (re)connect."""
    if snapshot not in _snapshots:
        _snapshots.append(snapshot)


def snapshots_read(user_id: int) -> list[dict]:
    """Every registered app's current extra events for ``user_id`` (see ``db_call``)."""
    events: list[dict] = []
    for snapshot in _snapshots:
        events.extend(snapshot(user_id))
    return events


def extra_event(event: str, key: int, seq: int, data: dict, *, active: bool) -> dict:
    """One extra event as it travels the channel layer: JSON-safe primitives only.

    ``event`` is the SSE event name (a word: ``job``); ``data`` its JSON payload.
    """
    if not event.isidentifier():
        raise ValueError(f"extra event names are plain words, not {event!r}")
    return {
        "kind": "extra",
        "event": event,
        "key": int(key),
        "seq": int(seq),
        "active": bool(active),
        "data": data,
    }
