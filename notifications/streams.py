"""The notification stream: history after the client's last id, then live events.

The order of operations is the guarantee:

1. subscribe to the user's key (the hub is a member of its group once this returns);
2. replay from the database everything after the client's last id, remembering the ids
   (each query on the shared thread pool, its connection released at once: an idle
   stream holds no thread and no connection, see ``streamsite.streaming.db``);
3. forward live events, skipping ids already replayed, with a keepalive comment whenever
   nothing happened for ``SSE_KEEPALIVE_SECONDS``.

An event published at any moment is either committed before the replay query (replayed) or
delivered live after the subscription: no gap. Ids replayed and also delivered live are sent
once. If the hub reports lost events (``RESYNC``), step 2 runs again from the last id sent.

Events published by two processes can arrive in the opposite order of their ids. Each
``created`` event names the id before it in the user's feed (``previous``): when the
stream has not sent that one, it replays from the database first, so the ids it sends
(and the client resumes after) never pass one still on its way. Only an announcement
(one event for everyone, naming only the announcement before it) can still overtake a
user's own notification: that one is sent when it comes, under the current resume id.
If the client reads too slowly and its buffer overflows, the stream ends and the browser
reconnects with ``Last-Event-ID``: the database has everything it missed.

Other apps' live state for the user (``event: job``) rides along (``notifications.extras``):
after the replay the stream sends their snapshot, then their live events, newest version of
each thing only. So does state that follows keys shared by many users (``event:
chat-unread``, ``notifications.watches``): at most once a second, the latest value.
"""

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import aclosing

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings

from notifications import extras, selectors
from notifications.events import ANNOUNCEMENTS_KEY, NOTIFICATION_FIELDS, user_key
from notifications.watches import WATCH_CHANGED, Watching
from streamsite.observability import metrics
from streamsite.streaming.db import db_call
from streamsite.streaming.hub import BATCH_CACHE, RESYNC, Subscription, get_hub
from streamsite.streaming.sse import (
    KEEPALIVE,
    encode_json_event,
    encode_json_object,
    encode_retry,
)

#: Live ids remembered (since the last read of the database) to drop a redelivery: only
#: the last few can arrive twice (a publish recovered after a Redis restart).
REMEMBERED_LIVE_IDS = 1024
#: Rows per chunk written while replaying.
REPLAY_CHUNK_ROWS = 100
#: What ``StreamState`` holds until it has an id or a thing to remember: most streams sit
#: idle for hours with none, and an empty set and deque of their own cost 840 bytes.
_NOTHING: frozenset = frozenset()
_NO_ORDER: tuple = ()

#: How often a stream re-reads the extras' snapshot while one of them is active and the
#: channel layer is the in-memory one: another process (a task worker) cannot reach this
#: one through it. The extras' own limit (at most 4 versions a second) still holds. When
#: the snapshot changed, the stream also catches up on notifications (from that process).
EXTRA_POLL_SECONDS = 0.25


class StreamState:
    """What one stream has sent: the resume id, what the client holds, the unread count.

    The unread count is kept in two parts (``selectors.UnreadParts``): the user's own,
    which every event for the user carries as it is after the event, and announcements,
    which are sent to everyone with no count and so are counted here, on top of a count
    read from the database up to ``announcements_counted_up_to``.
    """

    __slots__ = (
        "announcements",
        "announcements_counted_up_to",
        "ended",
        "extras_active",
        "extras_pending",
        "extras_sent",
        "floor",
        "last_id",
        "own",
        "recount",
        "sent_live",
        "sent_live_order",
        "session",
        "unread",
    )

    def __init__(self, last_id: int, session: str | None = None) -> None:
        #: The resume position: the highest id sent (the SSE ``id`` the client holds).
        self.last_id = last_id
        #: Every id of the feed at or below it is held by the client: it was read from the
        #: database (replayed or before ``Last-Event-ID``), and ids commit in order; or it
        #: was sent live right after the one before it in the feed (``previous``).
        self.floor = last_id
        self.session = session
        self.ended = False
        self.recount = False
        self.unread: int | None = None
        self.own = 0
        self.announcements = 0
        self.announcements_counted_up_to = 0
        #: Ids above ``floor`` sent live (a redelivery of one is dropped); shared empty
        #: placeholders until the first (``_remember_sent``).
        self.sent_live: set[int] | frozenset = _NOTHING
        self.sent_live_order: deque[int] | tuple = _NO_ORDER
        # Extra events (notifications.extras) by (event, key): the version sent, the newest
        # version waiting to be sent, and the things that may still change.
        self.extras_sent: dict[tuple[str, int], int] = {}
        self.extras_pending: dict[tuple[str, int], dict] = {}
        self.extras_active: set[tuple[str, int]] | frozenset = _NOTHING

    def caught_up(self) -> None:
        """The database was read up to ``last_id``: the client holds all of it now."""
        self.floor = self.last_id
        self.sent_live = _NOTHING
        self.sent_live_order = _NO_ORDER

    def behind(self, event: dict) -> bool:
        """Whether a live ``created`` event comes before one this stream has not sent yet
        (it overtook that one in the channel layer): then the database is read first."""
        return event["id"] > self.last_id and event.get("previous", 0) > self.last_id

    def _remember_sent(self, notification_id: int) -> None:
        if self.sent_live is _NOTHING:
            self.sent_live, self.sent_live_order = set(), deque()
        self.sent_live.add(notification_id)
        self.sent_live_order.append(notification_id)
        if len(self.sent_live_order) > REMEMBERED_LIVE_IDS:
            self.sent_live.discard(self.sent_live_order.popleft())

    def counted(self, parts: selectors.UnreadParts) -> bytes:
        """Take the counts read from the database; the ``unread`` event if it changed."""
        self.own = parts.own
        self.announcements = parts.announcements
        self.announcements_counted_up_to = parts.counted_up_to
        return self.unread_event()

    def unread_event(self) -> bytes:
        """The ``unread`` event if the count differs from what the client has, else b""."""
        count = self.own + self.announcements
        if count == self.unread:
            return b""
        self.unread = count
        # The same bytes as encode_json_event({"count": count}), without JSON machinery:
        # this runs for every notification delivered.
        return f'event: unread\ndata: {{"count":{int(count)}}}\n\n'.encode()

    def _take_counts(self, event: dict) -> bytes:
        if event["unread"] is not None:
            self.own = event["unread"]
        if "announcements_unread" in event:
            self.announcements = event["announcements_unread"]
            self.announcements_counted_up_to = max(
                self.announcements_counted_up_to, event["announcements_counted_up_to"]
            )
        return self.unread_event()

    def extra_take(self, event: dict) -> None:
        """Keep an extra event if it is the newest version of its thing seen so far."""
        thing = (event["event"], event["key"])
        newest = self.extras_pending.get(thing)
        seq = event["seq"]
        if seq <= self.extras_sent.get(thing, 0) or (newest is not None and seq <= newest["seq"]):
            return
        self.extras_pending[thing] = event

    def extras_flush(self) -> bytes:
        """Encode the extra events kept since the last flush: one per thing, its newest."""
        if not self.extras_pending:
            return b""
        out = []
        for thing, event in self.extras_pending.items():
            self.extras_sent[thing] = event["seq"]
            if event["active"]:
                if self.extras_active is _NOTHING:
                    self.extras_active = set()
                self.extras_active.add(thing)
            elif thing in self.extras_active:
                self.extras_active.discard(thing)
            out.append(encode_json_event(event["data"], event=event["event"]))
        self.extras_pending.clear()
        return b"".join(out)

    def render_live(self, event: dict) -> bytes:
        """Encode one live event from the hub for this client."""
        kind = event["kind"]
        if kind == "extra":
            self.extra_take(event)  # sent by extras_flush, after the rest of the batch
            return b""
        if kind == "created":
            notification_id = event["id"]
            if event["unread"] is None and notification_id > self.announcements_counted_up_to:
                self.announcements += 1  # an announcement: unread for everyone when sent
                self.announcements_counted_up_to = notification_id
            if notification_id <= self.floor or notification_id in self.sent_live:
                # The client has it already: replayed, or before its Last-Event-ID (a hub
                # lagging behind another process' hub delivers it after the reconnect),
                # or delivered twice.
                return self._take_counts(event)
            if notification_id > self.last_id:
                self.last_id = notification_id
                previous = event.get("previous")
                if event["unread"] is not None and previous is not None and previous <= self.floor:
                    # The user's own, and the one before it in the feed is at or under the
                    # floor: the client holds the feed up to this one, the floor moves up
                    # and nothing needs remembering. The usual case: a stream's memory of
                    # live ids stays empty (1,024 ids a stream was a fifth of what each
                    # full garbage collection traversed, docs/benchmarks.md).
                    self.caught_up()
                else:
                    self._remember_sent(notification_id)
                return notification_bytes(event) + self._take_counts(event)
            self._remember_sent(notification_id)
            # Overtaken by an announcement with a higher id, already sent: sent now, under
            # the resume id the client already has, so a reconnect does not resume before
            # the announcement and get it twice.
            late = {field: event[field] for field in NOTIFICATION_FIELDS}
            encoded = encode_json_event(late, event="notification", id=self.last_id)
            return encoded + self._take_counts(event)
        if kind == "read":
            payload = {"ids": event["ids"], "up_to": event["up_to"]}
            return encode_json_event(payload, event="read") + self._take_counts(event)
        if kind == "deleted":
            if event["unread"] is None:
                self.recount = True  # announcements: who had read them is in the database
            payload = {"ids": event["ids"]}
            return encode_json_event(payload, event="deleted") + self._take_counts(event)
        if kind == "session.ended" and event["session"] == self.session:
            self.ended = True
        return b""


def notification_bytes(event: dict) -> bytes:
    """The ``notification`` event of a ``created`` hub event, encoded once per event.

    An announcement reaches every stream of the process as one shared event dict: its
    bytes are kept on it. A batch (``notifications_create_many``) gives each recipient an
    event of their own, differing only in the id: the JSON of the fields they share is
    built once per batch (``BATCH_CACHE``), and each stream only puts its id in front.
    """
    encoded = event.get(_ENCODED)
    if encoded is not None:
        return encoded
    notification_id = int(event["id"])
    cache = event.get(BATCH_CACHE)
    if cache is None:
        payload = {field: event[field] for field in NOTIFICATION_FIELDS}
        encoded = event[_ENCODED] = encode_json_event(
            payload, event="notification", id=notification_id
        )
        return encoded
    rest = cache.get(_ENCODED)
    if rest is None:
        shared = {field: event[field] for field in NOTIFICATION_FIELDS if field != "id"}
        # '{"title":...}' -> b',"title":...}': what follows the id in the same JSON.
        rest = cache[_ENCODED] = b"," + encode_json_object(shared)[1:]
    return b'event: notification\nid: %d\ndata: {"id":%d%s\n\n' % (
        notification_id,
        notification_id,
        rest,
    )


STREAMS_OPEN = metrics.streams_open.labels("notifications")
SLOW_CLOSED = metrics.slow_clients_closed.labels("notifications", "sse_overflow")

#: Where ``notification_bytes`` keeps an encoding on a hub event or batch (never published).
_ENCODED = "_encoded_sse"


async def notification_stream(
    user_id: int, last_event_id: int | None, *, session: str | None = None
) -> AsyncIterator[bytes]:
    """Yield the SSE byte stream of ``user_id``'s notifications (see the module docstring).

    ``last_event_id`` None means "from now on": nothing is replayed. ``session`` is the
    digest of the browser session the stream belongs to: when it logs out, the stream ends
    (and the browser's reconnect then gets a 403, which stops EventSource for good).
    """
    poll = EXTRA_POLL_SECONDS if isinstance(get_channel_layer(), InMemoryChannelLayer) else None
    hub = get_hub()
    STREAMS_OPEN.inc()  # counted from here: the finally below always runs
    try:
        async with (
            hub.subscribe(user_key(user_id), maxsize=settings.SSE_BUFFER_EVENTS) as events,
            hub.subscribe(ANNOUNCEMENTS_KEY, maxsize=0, into=events),
        ):
            yield encode_retry(settings.SSE_RETRY_MILLISECONDS)
            if last_event_id is None:
                last_event_id = await selectors.alatest_notification_id(user_id)
            state = StreamState(last_event_id, session)
            last = b""
            async with aclosing(catch_up(user_id, state)) as chunks:
                async for chunk in chunks:
                    if last:
                        yield last
                    last = chunk

            watching = Watching(user_id, hub, events)
            try:
                # The watches' first state goes with the counts: one write ends the catch-up.
                yield last + await watching.start()
                async with aclosing(live_events(user_id, state, events, watching, poll)) as chunks:
                    async for chunk in chunks:
                        yield chunk
            finally:
                watching.close()
    finally:
        STREAMS_OPEN.dec()


async def live_events(
    user_id: int,
    state: StreamState,
    events: Subscription,
    watching: Watching,
    poll: float | None,
) -> AsyncIterator[bytes]:
    """Yield the stream's live part: events, the watches' state, keepalives."""
    keepalive = settings.SSE_KEEPALIVE_SECONDS
    loop = asyncio.get_running_loop()
    last_sent = loop.time()
    while True:
        now = loop.time()
        polling = poll is not None and bool(state.extras_active)
        # Nothing sent for ``keepalive`` seconds: a comment keeps proxies from hanging up.
        timeout = max(0.0, last_sent + keepalive - now)
        if polling:
            timeout = min(timeout, poll)
        watch_due = watching.due_in(now)
        if watch_due is not None:
            timeout = min(timeout, watch_due)
        if not await events.wait(timeout):
            chunk = await extras_read(user_id, state) if polling else b""
            if chunk:
                # Whatever changed the extras in another process may have notified the
                # user there too (an export that finished): the layer cannot say so.
                async with aclosing(catch_up(user_id, state, extras=False)) as chunks:
                    chunk += b"".join([part async for part in chunks])
            chunk += await watching.flush(loop.time())
            if not chunk and loop.time() - last_sent >= keepalive:
                chunk = KEEPALIVE
            if chunk:
                yield chunk
                last_sent = loop.time()
            continue
        if events.overflowed:
            if not events.restarting:
                SLOW_CLOSED.inc()
            return  # the client reconnects with Last-Event-ID and catches up
        resync = False
        out = []
        for item in events.take():
            if item is RESYNC:
                resync = True
            elif item is WATCH_CHANGED:
                pass  # the watches' turn comes below, when due
            elif item["kind"] == "watch.refresh":
                watching.refresh(item["event"])
            else:
                if item["kind"] == "created" and state.behind(item):
                    async with aclosing(catch_up(user_id, state, extras=False)) as chunks:
                        out += [chunk async for chunk in chunks]
                out.append(state.render_live(item))
                metrics.delivered.add("notifications", item["kind"])
        if state.recount:
            state.recount = False
            parts = await selectors.aunread_parts(user_id, up_to=state.last_id)
            out.append(state.counted(parts))
        out.append(state.extras_flush())
        out.append(await watching.flush(loop.time()))
        chunk = b"".join(out)
        if chunk:
            yield chunk
            last_sent = loop.time()
        if state.ended:
            return
        if resync:
            async with aclosing(catch_up(user_id, state)) as chunks:
                async for chunk in chunks:
                    yield chunk


async def extras_read(user_id: int, state: StreamState) -> bytes:
    """The extras' snapshot (``notifications.extras``), minus what the client has."""
    for event in await db_call(extras.snapshots_read, user_id):
        state.extra_take(event)
    return state.extras_flush()


async def catch_up(
    user_id: int, state: StreamState, *, extras: bool = True
) -> AsyncIterator[bytes]:
    """Yield every notification after ``state.last_id`` from the database, then the count,
    then (with ``extras``) the other apps' snapshot (``notifications.extras``)."""
    buffered: list[bytes] = []
    async with aclosing(selectors.notifications_after(user_id, state.last_id)) as rows:
        async for notification in rows:
            state.last_id = notification.pk
            buffered.append(
                encode_json_event(notification.as_event(), event="notification", id=notification.pk)
            )
            if len(buffered) >= REPLAY_CHUNK_ROWS:
                yield b"".join(buffered)
                buffered = []
    state.caught_up()
    # Announcements are counted up to the last id replayed: later ones arrive live and
    # are counted then (their ids come after every id committed before them).
    parts = await selectors.aunread_parts(user_id, up_to=state.last_id)
    buffered.append(state.counted(parts))
    if extras:
        buffered.append(await extras_read(user_id, state))
    yield b"".join(buffered)
