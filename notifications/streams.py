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
from collections.abc import AsyncIterator
from contextlib import aclosing

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings

from notifications import extras, selectors
from notifications.events import ANNOUNCEMENTS_KEY, user_key
from notifications.stream_state import StreamState
from notifications.watches import WATCH_CHANGED, Watching
from streamsite.http_chunks import ChunkWriter
from streamsite.observability import metrics
from streamsite.streaming.db import db_call
from streamsite.streaming.hub import RESYNC, Subscription, get_hub
from streamsite.streaming.keepalive import Keepalives
from streamsite.streaming.sse import (
    KEEPALIVE,
    encode_json_event,
    encode_retry,
)

#: Rows per chunk written while replaying.
REPLAY_CHUNK_ROWS = 100

#: How often a stream re-reads the extras' snapshot while one of them is active and the
#: channel layer is the in-memory one: another process (a task worker) cannot reach this
#: one through it. The extras' own limit (at most 4 versions a second) still holds. When
#: the snapshot changed, the stream also catches up on notifications (from that process).
EXTRA_POLL_SECONDS = 0.25


STREAMS_OPEN = metrics.streams_open.labels("notifications")
SLOW_CLOSED = metrics.slow_clients_closed.labels("notifications", "sse_overflow")


class DirectDelivery:
    """The hub's fast path for a parked stream: write live notifications without a wake.

    Waking the stream's task for every event, to have it yield the bytes through Django's
    response iterator and the server's ``send``, cost twice what rendering and writing
    them does (docs/benchmarks.md, "SSE fan-out"). While the stream's generator is parked
    in ``Subscription.wait`` it has nothing in flight, so the hub hands each event here
    (``Subscription.direct``): a ``created`` event is rendered by the stream's own
    ``StreamState``, in the order the hub received it. What the events of one hub step
    (a batch of messages: ``Hub._receive_forever``) rendered is written once, as one
    chunk, right after that step (``ChunkWriter``): one system call per stream, however
    many events. Everything else, and every event while the connection cannot take a
    write now (flow control: a slow client) or the stream has work of its own (the
    database to read first, a count to re-read), returns False to be buffered: the
    generator wakes and handles it after the write, in order.
    """

    __slots__ = ("_events", "_keepalive", "_loop", "_pending", "_state", "_writer", "written_at")

    def __init__(self, state: StreamState, events: Subscription, writer: ChunkWriter, loop):
        self._state = state
        self._events = events
        self._writer = writer
        self._loop = loop
        self._pending: list[bytes] | None = None
        self._keepalive = settings.SSE_KEEPALIVE_SECONDS
        #: When the stream last wrote, here or through its generator (loop time): a
        #: keepalive is due that long after.
        self.written_at = loop.time()

    def keepalive(self, now: float) -> None:
        """Write the keepalive comment if one is due and the stream is parked (called by
        ``streamsite.streaming.keepalive.Keepalives``, so the stream needs no timer)."""
        if now - self.written_at < self._keepalive or self._pending is not None:
            return
        if not self._events.parked() or self._state.ended:
            return  # awake: it writes, or parks again, on its own
        if self._writer.writable():
            self._writer.write(KEEPALIVE)
        else:
            self._events.push(KEEPALIVE)  # a slow client: the stream's own send waits
        self.written_at = now

    def __call__(self, event) -> bool:
        if type(event) is not dict or event.get("kind") != "created":
            return False
        state = self._state
        if (
            not self._events.parked()
            or state.recount
            or state.ended
            or state.behind(event)
            or not self._writer.writable()
        ):
            return False
        chunk = state.render_live(event)
        metrics.delivered.add("notifications", "created")
        if chunk:
            if self._pending is None:
                self._pending = [chunk]
                # Before the stream's own wake, if this step buffers an event after it:
                # callbacks run in the order they were scheduled.
                self._loop.call_soon(self._flush)
            else:
                self._pending.append(chunk)
        return True

    def _flush(self) -> None:
        body = b"".join(self._pending)
        self._pending = None
        if self._writer.writable():
            self._writer.write(body)
            self.written_at = self._loop.time()
            metrics.written_directly.add("notifications")
        else:
            # The client went away (nothing to send to), or the server stopped reading
            # from it: the stream sends the bytes itself when it wakes, before anything
            # this step buffered after them.
            self._events.push_first(body)


async def notification_stream(
    user_id: int,
    last_event_id: int | None,
    *,
    session: str | None = None,
    writer: ChunkWriter | None = None,
) -> AsyncIterator[bytes]:
    """Yield the SSE byte stream of ``user_id``'s notifications (see the module docstring).

    ``last_event_id`` None means "from now on": nothing is replayed. ``session`` is the
    digest of the browser session the stream belongs to: when it logs out, the stream ends
    (and the browser's reconnect then gets a 403, which stops EventSource for good).
    ``writer``, for the connection the stream is the response body of, lets the hub write
    live notifications while the stream is parked (``DirectDelivery``).
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
            direct = keepalives = None
            try:
                # The watches' first state goes with the counts: one write ends the catch-up.
                yield last + await watching.start()
                if writer is not None:
                    loop = asyncio.get_running_loop()
                    direct = events.direct = DirectDelivery(state, events, writer, loop)
                    keepalives = Keepalives.for_running_loop()
                    keepalives.add(direct)
                live = live_events(user_id, state, events, watching, poll, direct)
                async with aclosing(live) as chunks:
                    async for chunk in chunks:
                        yield chunk
            finally:
                if keepalives is not None:
                    keepalives.discard(direct)
                events.direct = None
                watching.close()
    finally:
        STREAMS_OPEN.dec()


async def live_events(
    user_id: int,
    state: StreamState,
    events: Subscription,
    watching: Watching,
    poll: float | None,
    direct: DirectDelivery | None = None,
) -> AsyncIterator[bytes]:
    """Yield the stream's live part: events, the watches' state, keepalives.

    With ``direct`` in place (``Subscription.direct``), live notifications that arrive
    while this is parked are written without waking it, and so are its keepalives
    (``streamsite.streaming.keepalive``): it waits without a timer unless it polls or a
    watch is due. The rest come through here.
    """
    keepalive = settings.SSE_KEEPALIVE_SECONDS
    loop = asyncio.get_running_loop()
    last_sent = loop.time()
    while True:
        now = loop.time()
        if direct is not None and direct.written_at > last_sent:
            last_sent = direct.written_at
        polling = poll is not None and bool(state.extras_active)
        # Nothing sent for ``keepalive`` seconds: a comment keeps proxies from hanging up.
        timeout = None if direct is not None else max(0.0, last_sent + keepalive - now)
        if polling:
            timeout = poll if timeout is None else min(timeout, poll)
        watch_due = watching.due_in(now)
        if watch_due is not None:
            timeout = watch_due if timeout is None else min(timeout, watch_due)
        if not await events.wait(timeout):
            chunk = await extras_read(user_id, state) if polling else b""
            if chunk:
                # Whatever changed the extras in another process may have notified the
                # user there too (an export that finished): the layer cannot say so.
                async with aclosing(catch_up(user_id, state, extras=False)) as chunks:
                    chunk += b"".join([part async for part in chunks])
            chunk += await watching.flush(loop.time())
            if direct is not None:
                last_sent = max(last_sent, direct.written_at)
            if not chunk and loop.time() - last_sent >= keepalive:
                chunk = KEEPALIVE
            if chunk:
                yield chunk
                last_sent = sent_now(loop, direct)
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
            elif type(item) is bytes:
                out.append(item)  # rendered already: a direct write that could not be made
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
            last_sent = sent_now(loop, direct)
        if state.ended:
            return
        if resync:
            async with aclosing(catch_up(user_id, state)) as chunks:
                async for chunk in chunks:
                    yield chunk


def sent_now(loop, direct: DirectDelivery | None) -> float:
    """The stream wrote just now: its next keepalive is due a full interval from here,
    for the keepalive sweep too."""
    now = loop.time()
    if direct is not None:
        direct.written_at = now
    return now


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
