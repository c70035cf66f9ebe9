"""The user's unread chat counts, live on their notification stream (``event: chat-unread``).

A ``notifications.watches.Watch``: each notification stream follows the keys of the user's
rooms (``chat.events.room_key``) and counts their new messages itself, so a message in a
room of 10,000 members costs one channel-layer message per process and a dictionary
update per stream, no query and no per-member event. What an event does not say (a
deletion, a read cursor that moved, a membership that changed, lost events) makes the
stream read the counts again: one query, capped per room (``selectors.unread_by_room``).

Registered in ``ChatConfig.ready``; the services send ``watch.refresh`` to the user when
their read cursor or their rooms change (``notifications.services.stream_watch_refresh``).
"""

from chat import selectors
from chat.events import room_key
from notifications.watches import Watch

#: The SSE event name; the payload is ``{"total", "rooms": {slug: count}, "cap"}``.
EVENT = "chat-unread"


class _Room:
    __slots__ = ("latest", "slug", "unread")

    def __init__(self, slug: str, unread: int, latest: int) -> None:
        self.slug = slug
        self.unread = unread
        self.latest = latest  # the highest message id counted or known read


class ChatUnreadWatch(Watch):
    """One stream's unread counts of the user's rooms, capped at ``UNREAD_CAP`` each."""

    event = EVENT

    def __init__(self, user_id: int) -> None:
        super().__init__(user_id)
        self.rooms: dict[str, _Room] = {}

    def read(self) -> list[tuple[int, str, int, int]]:
        return selectors.unread_by_room(self.user_id)

    def replace(self, snapshot: list[tuple[int, str, int, int]]) -> set[str]:
        self.rooms = {slug: _Room(slug, unread, latest) for _id, slug, unread, latest in snapshot}
        return {room_key(room_id) for room_id, *_rest in snapshot}

    def take(self, event: dict) -> bool:
        kind = event.get("kind")
        if kind == "message":
            return self._message(event["message"])
        if kind == "member.removed":
            if event.get("user_id") == self.user_id:
                self.stale = True
            return False
        if kind in ("message.deleted", "room.deleted"):
            # Whether the deleted message was counted is in the database, not the event.
            self.stale = True
        return False  # typing, the assistant's text: no count changes

    def _message(self, message: dict) -> bool:
        room = self.rooms.get(message.get("room"))
        if room is None:
            self.stale = True  # a room the last read did not know
            return False
        message_id = message["id"]
        if message_id <= room.latest:
            return False  # counted by the read, or sent again after a publish failed
        room.latest = message_id
        if message["author"]["id"] == self.user_id:
            room.unread = 0  # posting moves the author's read cursor to their message
        elif room.unread < selectors.UNREAD_CAP:
            room.unread += 1
        else:
            return False
        return True

    def payload(self) -> dict:
        rooms = {room.slug: room.unread for room in self.rooms.values() if room.unread}
        return {
            "total": min(sum(rooms.values()), selectors.UNREAD_CAP),
            "rooms": rooms,
            "cap": selectors.UNREAD_CAP,
        }
