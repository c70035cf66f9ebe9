"""What one notification stream has sent, and the bytes of a live event for its client.

Kept apart from the stream itself (``notifications.streams``): every live event a stream
sends, through its generator or written directly by the hub (``streams.DirectDelivery``),
goes through ``StreamState.render_live``, which decides what the client gets (a
redelivery dropped, a late one sent under the current resume id, the unread count) and
keeps what it needs to decide the next one.
"""

from collections import deque

from notifications import selectors
from notifications.events import NOTIFICATION_FIELDS
from streamsite.streaming.hub import BATCH_CACHE
from streamsite.streaming.sse import encode_json_event, encode_json_object

#: Live ids remembered (since the last read of the database) to drop a redelivery: only
#: the last few can arrive twice (a publish recovered after a Redis restart).
REMEMBERED_LIVE_IDS = 1024
#: What ``StreamState`` holds until it has an id or a thing to remember: most streams sit
#: idle for hours with none, and an empty set and deque of their own cost 840 bytes.
_NOTHING: frozenset = frozenset()
_NO_ORDER: tuple = ()

#: Where ``notification_bytes`` keeps an encoding on a hub event or batch (never published).
_ENCODED = "_encoded_sse"


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
