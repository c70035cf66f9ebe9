"""The per-socket writer (chat.outbox): order, duplicates, slow readers, recovery."""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from prometheus_client import REGISTRY

from assistant import services as assistant_services
from assistant.events import Route, room_delta_event
from assistant.models import Answer
from chat import protocol, selectors
from chat.events import message_event, message_payload
from chat.models import Message
from chat.outbox import RoomOutbox
from chat.presence import PresencePage, close_presence, delta_event, get_presence, resync_event
from chat.tests.factories import add_messages, in_plain_thread, post, room_with
from streamsite.streaming.hub import RESYNC, Subscription

pytestmark = pytest.mark.django_db(transaction=True)


class Socket:
    """Collects what the outbox sends; ``gate`` blocks sends to play a slow reader."""

    def __init__(self) -> None:
        self.frames: list[dict] = []
        self.close_code: int | None = None
        self.gate = asyncio.Event()
        self.gate.set()
        self.changed = asyncio.Condition()

    async def send(self, message: dict) -> None:
        assert message["type"] == "websocket.send"
        await self.gate.wait()
        self.frames.append(json.loads(message["text"]))
        async with self.changed:
            self.changed.notify_all()

    async def close(self, code: int) -> None:
        self.close_code = code
        async with self.changed:
            self.changed.notify_all()

    async def until(self, predicate) -> None:
        async with asyncio.timeout(10), self.changed:
            await self.changed.wait_for(lambda: predicate(self))

    def message_ids(self) -> list[int]:
        return [f["message"]["id"] for f in self.frames if f["type"] == "message"]


@pytest.fixture
def room(transactional_db):
    return room_with("lobby")


def outbox_for(room, user, socket: Socket, maxsize: int = 1000) -> RoomOutbox:
    return RoomOutbox(
        room=room,
        user=user,
        session="digest",
        events=Subscription("chat.room.test", maxsize),
        send=socket.send,
        close=socket.close,
    )


@pytest.fixture
async def start_outbox():
    """``outbox, socket = await start_outbox(room, user)``: started (presence and history
    sent) and running; its task is cancelled after the test."""
    tasks: list[asyncio.Task] = []

    async def start(room, user, *, online=(), history=(), maxsize=1000):
        socket = Socket()
        outbox = outbox_for(room, user, socket, maxsize)
        presence = PresencePage(list(online), len(online), False, 10)
        await outbox.start(presence, selectors.JoiningPage(list(history), False))
        tasks.append(asyncio.create_task(outbox.run()))
        return outbox, socket

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def live(message) -> dict:
    return message_event(message_payload(message))


async def test_live_messages_already_in_the_join_history_are_not_sent_again(
    room, user, start_outbox
):
    messages = await sync_to_async(add_messages)(room, user, 3)
    for message in messages:
        message.room = room
    outbox, socket = await start_outbox(room, user, online=["alice"], history=messages[:2])
    for message in messages:
        outbox.events.push(live(message))
    await socket.until(lambda s: s.message_ids() == [messages[2].pk])


async def test_sockets_joining_together_send_the_page_s_frame_built_once(room, user):
    """The page is shared by the sockets whose joins shared its read: the first builds the
    history frame, the next sends that very string; each still notes what it sent."""
    messages = await sync_to_async(add_messages)(room, user, 3)
    for message in messages:
        message.room = room
    page = selectors.JoiningPage(messages, has_more=True)
    texts: list[str] = []

    class RawSocket(Socket):
        async def send(self, message: dict) -> None:
            texts.append(message["text"])  # the string itself, to compare the objects

    outboxes = []
    for _ in range(2):
        outbox = outbox_for(room, user, RawSocket())
        await outbox.start(PresencePage([], 0, False, 10), page)
        outboxes.append(outbox)
    history = [text for text in texts if json.loads(text)["type"] == "history"]
    assert len(history) == 2 and history[0] is history[1]
    assert json.loads(history[0])["has_more"] is True
    assert [m["id"] for m in json.loads(history[0])["messages"]] == [m.pk for m in messages]
    assert all(outbox.last_id == messages[-1].pk for outbox in outboxes)


async def test_live_messages_wait_for_a_resume_and_none_is_sent_twice(room, user, start_outbox):
    messages = await sync_to_async(add_messages)(room, user, 1200)
    for message in messages:
        message.room = room
    outbox, socket = await start_outbox(room, user)
    # A resume, then live events for messages it will also replay, and one it will not.
    assert outbox.request_resume(0)
    for message in messages[-5:]:
        outbox.events.push(live(message))
    await socket.until(lambda s: len(s.message_ids()) >= 1200)
    assert socket.message_ids() == [m.pk for m in messages]


async def test_a_slow_reader_is_closed_with_1013_and_memory_stays_bounded(room, user, start_outbox):
    messages = await sync_to_async(add_messages)(room, user, 1)
    messages[0].room = room
    outbox, socket = await start_outbox(room, user, maxsize=10)
    socket.gate.clear()  # the client stops reading
    event = live(messages[0])
    for n in range(50):
        outbox.events.push({**event, "message": {**event["message"], "id": 10_000 + n}})
    closed = {"app": "chat", "reason": "socket_1013"}
    before = REGISTRY.get_sample_value("streamsite_slow_clients_closed_total", closed) or 0
    socket.gate.set()
    await socket.until(lambda s: s.close_code == protocol.CLOSE_TRY_AGAIN_LATER)
    assert len(outbox.events.take()) == 0
    assert REGISTRY.get_sample_value("streamsite_slow_clients_closed_total", closed) == before + 1


async def test_a_server_shutting_down_closes_the_socket_with_1012(room, user, start_outbox):
    """Issue #13: on SIGTERM every socket is told to reconnect elsewhere (Hub.end_streams)."""
    outbox, socket = await start_outbox(room, user)
    outbox.events.end()
    await socket.until(lambda s: s.close_code == protocol.CLOSE_SERVICE_RESTART)


async def test_resync_replays_from_the_last_id_sent(room, user, start_outbox):
    messages = await sync_to_async(add_messages)(room, user, 5)
    for message in messages:
        message.room = room
    outbox, socket = await start_outbox(room, user, history=messages[:2])
    # Messages 3..5 were published while the layer was down: only RESYNC says so.
    outbox.events.push(RESYNC)
    await socket.until(lambda s: s.message_ids() == [m.pk for m in messages[2:]])


async def test_presence_deltas_leave_out_what_the_snapshot_holds(room, user, start_outbox):
    """The snapshot on connect is at version 10: older changes are in it already."""
    outbox, socket = await start_outbox(room, user, online=["alice"])
    outbox.events.push(delta_event(room.pk, {"bob": 12}, {}, 2, 12))
    outbox.events.push(delta_event(room.pk, {"carol": 9}, {}, 3, 9))  # older than the snapshot
    # Coalesced while this socket connected: dave's change is in the snapshot, erin's not.
    outbox.events.push(delta_event(room.pk, {"dave": 8, "erin": 13}, {"bob": 13}, 3, 13))
    outbox.events.push({"kind": "typing", "user": "bob", "user_id": user.pk + 1})
    await socket.until(lambda s: s.frames[-1]["type"] == "typing")
    assert [f for f in socket.frames if f["type"] == "presence.delta"] == [
        {"type": "presence.delta", "joined": ["bob"], "left": [], "count": 2, "version": 12},
        {"type": "presence.delta", "joined": ["erin"], "left": ["bob"], "count": 3, "version": 13},
    ]


async def test_a_presence_resync_reads_the_room_again(room, user, start_outbox):
    """The store lost the room: the socket gets the first page again, as read now."""
    outbox, socket = await start_outbox(room, user, online=["alice", "carol"])
    try:
        page = await get_presence().join(room.pk, 99, "zed")
        outbox.events.push(resync_event(room.pk, page.version))
        outbox.events.push(resync_event(room.pk, 5))  # older than the snapshot: nothing
        outbox.events.push({"kind": "typing", "user": "bob", "user_id": user.pk + 1})
        await socket.until(lambda s: s.frames[-1]["type"] == "typing")
        snapshots = [f for f in socket.frames if f["type"] == "presence"]
        assert [f["online"] for f in snapshots] == [["alice", "carol"], ["zed"]]
        assert snapshots[-1]["version"] == page.version
    finally:
        await close_presence()


async def test_removal_closes_a_private_room_socket_but_not_a_public_one(
    user, start_outbox, transactional_db
):
    public = await sync_to_async(room_with)("public")
    private = await sync_to_async(room_with)("private", private=True, members=[user])
    sockets = {}
    for room in (public, private):
        outbox, sockets[room.slug] = await start_outbox(room, user)
        outbox.events.push({"kind": "member.removed", "user_id": user.pk})
        outbox.events.push({"kind": "typing", "user": "bob", "user_id": user.pk + 1})
    await sockets["private"].until(lambda s: s.close_code == protocol.CLOSE_FORBIDDEN)
    assert sockets["private"].frames[-1]["type"] == "history"  # nothing after the removal
    await sockets["public"].until(lambda s: s.frames[-1]["type"] == "typing")
    assert sockets["public"].close_code is None


async def test_session_end_closes_only_that_session_s_sockets(room, user, start_outbox):
    outbox, socket = await start_outbox(room, user)
    outbox.events.push({"kind": "session.ended", "session": "another"})
    outbox.events.push({"kind": "typing", "user": "bob", "user_id": user.pk + 1})
    await socket.until(lambda s: s.frames[-1]["type"] == "typing")
    assert socket.close_code is None
    outbox.events.push({"kind": "session.ended", "session": "digest"})
    await socket.until(lambda s: s.close_code == protocol.CLOSE_NOT_LOGGED_IN)


async def test_the_same_event_is_encoded_once(room, user):
    message = (await sync_to_async(add_messages)(room, user, 1))[0]
    message.room = room
    event = live(message)
    assert protocol.event_frame(event) is protocol.event_frame(event)
    assert protocol.event_send(event) is protocol.event_send(event)
    assert protocol.event_send(event)["text"] == protocol.event_frame(event)


async def test_nothing_is_sent_after_the_socket_closed(room, user, start_outbox):
    outbox, socket = await start_outbox(room, user)
    await outbox.close(protocol.CLOSE_TOO_LARGE)
    outbox.events.push({"kind": "typing", "user": "bob", "user_id": user.pk + 1})
    await outbox.send_presence(PresencePage(["alice", "bob"], 2, False, 50))
    assert [f["type"] for f in socket.frames] == ["presence", "history"]


async def wait_until_idle(outbox: RoomOutbox) -> None:
    async with asyncio.timeout(10):
        while not outbox._idle:  # noqa: ASYNC110 - the writer task flips it
            await asyncio.sleep(0)


async def test_an_idle_socket_gets_live_frames_without_a_task_wake(room, user, start_outbox):
    messages = await sync_to_async(add_messages)(room, user, 2)
    for message in messages:
        message.room = room
    outbox, socket = await start_outbox(room, user)
    await wait_until_idle(outbox)
    for message in messages:
        assert outbox.deliver_now(live(message)) is True
    # Written synchronously: nothing buffered, nothing waiting.
    assert socket.message_ids() == [m.pk for m in messages]
    assert outbox.events.take() == []
    # A duplicate is dropped there too.
    assert outbox.deliver_now(live(messages[0])) is True
    assert socket.message_ids() == [m.pk for m in messages]


async def test_a_direct_send_that_must_wait_keeps_the_order(room, user, start_outbox):
    messages = await sync_to_async(add_messages)(room, user, 5)
    for message in messages:
        message.room = room
    outbox, socket = await start_outbox(room, user)
    await wait_until_idle(outbox)
    socket.gate.clear()  # the connection must drain: the first send suspends
    assert outbox.deliver_now(live(messages[0])) is True
    assert outbox._writes.inflight is not None
    for message in messages[1:]:
        # Not direct while a send is in flight: queued for the writer, behind it.
        assert outbox.deliver_now(live(message)) is False
        outbox.events.push(live(message))
    socket.gate.set()
    await socket.until(lambda s: len(s.message_ids()) == 5)
    assert socket.message_ids() == [m.pk for m in messages]


class RecordingFrames:
    """Stands in for ``FrameWriter`` (uvicorn's plain connection): records the bytes."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, frame: bytes) -> bool:
        self.written.append(frame)
        return True


async def test_an_idle_socket_gets_the_room_s_presence_delta_as_its_shared_bytes(
    room, user, start_outbox
):
    """A crowd joining sends each joined socket the same delta: its wire bytes are built
    once, not framed again per socket through ``send``; a socket whose snapshot already
    holds part of it gets its own cut, through ``send``."""
    outboxes = [await start_outbox(room, user, online=["alice"]) for _ in range(2)]
    late, late_socket = await start_outbox(room, user, online=["alice", "dave"])
    late.presence_version = 12  # its snapshot holds dave's change (12), not erin's (13)
    recorders = []
    for outbox, _socket in [*outboxes, (late, late_socket)]:
        await wait_until_idle(outbox)
        outbox._writes.frames = RecordingFrames()
        recorders.append(outbox._writes.frames)
    event = delta_event(room.pk, {"bob": 11, "dave": 12, "erin": 13}, {}, 4, 13)
    for outbox, _socket in [*outboxes, (late, late_socket)]:
        assert outbox.deliver_now(event) is True
    await asyncio.sleep(0)  # one turn of the loop: the hub step's frames are written after it
    first, second, third = (recorder.written for recorder in recorders)
    assert len(first) == 1 and second[0] is first[0]  # the same bytes object
    assert b'"joined":["bob","dave","erin"]' in first[0]
    assert third == []  # its own frame, not the room's
    assert late_socket.frames[-1] == {
        "type": "presence.delta", "joined": ["erin"], "left": [], "count": 4, "version": 13
    }  # fmt: skip
    assert all(socket.frames[-1]["type"] != "presence.delta" for _, socket in outboxes)


async def test_closing_events_are_left_to_the_writer(room, user, start_outbox):
    outbox, _socket = await start_outbox(room, user)
    await wait_until_idle(outbox)
    assert outbox.deliver_now({"kind": "room.deleted"}) is False
    assert outbox.deliver_now({"kind": "created", "id": 1}) is True  # not ours: dropped


# The assistant's answers --------------------------------------------------------------------


@pytest.fixture
async def answer_in(user):
    """``(room, question, answer message, write)`` for an answer in a new room: nothing
    generates it (no server loop), ``write(text)`` appends to it and returns its event."""

    def setup():
        room = room_with("ask", members=[user], assistant=True)
        post(user, room, "@assistant hello")
        question, shown = Message.objects.filter(room=room).select_related("author", "room")
        return room, question, shown

    room, question, shown = await in_plain_thread(setup)

    def write(text: str) -> dict:
        answer = Answer.objects.get(pk=shown.assistant_answer_id)
        assistant_services.answer_append(
            answer_id=answer.pk, route=Route.of(answer), start=answer.position, text=text
        )
        return room_delta_event(Route.of(answer), answer.pk, answer.position, text)

    return room, question, shown, write


def answer_frames(socket: Socket) -> list[dict]:
    return [f for f in socket.frames if f["type"] in ("message.delta", "message.done")]


async def test_a_lost_delta_is_read_from_the_database_and_nothing_is_sent_twice(
    user, start_outbox, answer_in
):
    room, _question, shown, write = answer_in
    history, _ = await in_plain_thread(selectors.room_history, room)
    outbox, socket = await start_outbox(room, user, history=history)
    first = await in_plain_thread(write, "Hello")
    outbox.events.push(first)
    await socket.until(lambda s: len(answer_frames(s)) == 1)
    await in_plain_thread(write, " wor")  # lost: never reaches the socket
    third = await in_plain_thread(write, "ld é😀")
    outbox.events.push(third)  # a gap: the socket reads the rest from the database
    outbox.events.push(third)  # the same again: covered, dropped
    outbox.events.push(first)
    await socket.until(lambda s: len(answer_frames(s)) == 2)
    await in_plain_thread(
        assistant_services.answer_finish, answer_id=shown.assistant_answer_id, status="complete"
    )
    outbox.events.push({**third, "kind": "assistant.done", "status": "complete", "error": None})
    await socket.until(lambda s: len(answer_frames(s)) == 3)
    assert answer_frames(socket) == [
        {"type": "message.delta", "id": shown.pk, "position": 5, "text": "Hello"},
        {"type": "message.delta", "id": shown.pk, "position": 14, "text": " world é😀"},
        {"type": "message.done", "id": shown.pk, "status": "complete", "position": 14}
        | {"error": None},
    ]


async def test_an_answer_s_text_arriving_before_its_message_is_not_lost(
    user, start_outbox, answer_in
):
    room, question, shown, write = answer_in
    outbox, socket = await start_outbox(room, user)
    outbox.events.push(await in_plain_thread(write, "Hi"))  # before its message's own event
    question.room = shown.room = room
    outbox.events.push(message_event(message_payload(question)))
    shown.answer_state = {"status": "streaming", "text": "", "position": 0, "error": ""}
    outbox.events.push(message_event(message_payload(shown), answer_id=shown.assistant_answer_id))
    await socket.until(lambda s: shown.pk in s.message_ids())
    outbox.events.push(await in_plain_thread(write, " there"))
    await socket.until(lambda s: len(answer_frames(s)) == 1)
    payloads = [f["message"] for f in socket.frames if f["type"] == "message"]
    assert [(m["id"], m["body"]) for m in payloads] == [
        (question.pk, "@assistant hello"),
        (shown.pk, "Hi"),  # read again: its state when the socket framed it
    ]
    assert answer_frames(socket) == [
        {"type": "message.delta", "id": shown.pk, "position": 8, "text": " there"}
    ]


async def stored(room, user, count: int) -> list:
    """``count`` messages stored in ``room``, each with its room loaded (for payloads)."""
    messages = await sync_to_async(add_messages)(room, user, count)
    for message in messages:
        message.room = room
    return messages


def live_after(message, previous) -> dict:
    """``message``'s event as ``message_post`` publishes it: naming the room's message
    before it (``previous``)."""
    return message_event(message_payload(message), previous_id=previous.pk if previous else None)


async def test_a_message_that_overtakes_an_earlier_one_sends_both_in_order(
    room, user, start_outbox
):
    """Two processes publish 2 and 3 (committed in that order); 3's event arrives first.
    The socket must not hold 3 without 2 (a reconnect would resume after 3 and never get
    2): it reads the room and sends 2 then 3; 2's own event, when it comes, is not sent
    again."""
    first, second, third = await sync_to_async(add_messages)(room, user, 3)
    for message in (first, second, third):
        message.room = room
    outbox, socket = await start_outbox(room, user, history=[first])
    outbox.events.push(live_after(third, second))
    await socket.until(lambda s: len(s.message_ids()) >= 2)
    assert socket.message_ids() == [second.pk, third.pk]
    outbox.events.push(live_after(second, first))
    fourth = (await sync_to_async(add_messages)(room, user, 1))[0]
    fourth.room = room
    outbox.events.push(live_after(fourth, third))
    await socket.until(lambda s: len(s.message_ids()) >= 3)
    assert socket.message_ids() == [second.pk, third.pk, fourth.pk]


async def test_in_order_events_are_sent_as_they_come_without_reading_the_room(
    room, user, start_outbox
):
    """The usual case costs no read: the fifth message is stored but its event never
    comes, so it would show up only if the room were read."""
    first, second, third, fourth, fifth = await sync_to_async(add_messages)(room, user, 5)
    for message in (first, second, third, fourth):
        message.room = room
    outbox, socket = await start_outbox(room, user, history=[first])
    outbox.events.push(live_after(second, first))
    outbox.events.push(live_after(third, second))
    outbox.events.push(live_after(fourth, third))
    await socket.until(lambda s: len(s.message_ids()) >= 3)
    assert socket.message_ids() == [second.pk, third.pk, fourth.pk]
    assert fifth.pk not in socket.message_ids()


async def test_a_message_a_moment_ahead_of_an_earlier_one_waits_for_it_without_a_read(
    room, user, start_outbox, monkeypatch
):
    """Senders publish after their own commits, so a busy room's events often arrive a
    moment out of order: the socket holds the later one until the earlier one's event
    comes, and reads nothing (a read per socket for each such pair, in a room of 1,000,
    was 1,000 reads)."""
    reads = []
    real_messages_after = selectors.messages_after

    def counting(*args, **kwargs):
        reads.append(args)
        return real_messages_after(*args, **kwargs)

    monkeypatch.setattr(selectors, "messages_after", counting)
    first, second, third, fourth = await stored(room, user, 4)
    outbox, socket = await start_outbox(room, user, history=[first])
    outbox.events.push(live_after(third, second))
    outbox.events.push(live_after(fourth, third))
    outbox.events.push(live_after(second, first))
    await socket.until(lambda s: len(s.message_ids()) >= 3)
    assert socket.message_ids() == [second.pk, third.pk, fourth.pk]
    assert reads == []


async def test_while_a_message_is_held_what_follows_is_not_written_directly(
    room, user, start_outbox
):
    """The direct path would put a later message before the held one's predecessor."""
    first, second, third = await stored(room, user, 3)
    outbox, socket = await start_outbox(room, user, history=[first])
    outbox.events.push(live_after(third, second))
    async with asyncio.timeout(5):
        while not (outbox._reorder.held is not None and outbox._idle):  # noqa: ASYNC110 - bounded
            await asyncio.sleep(0.01)
    assert outbox.deliver_now(live_after(second, first)) is False
    outbox.events.push(live_after(second, first))
    await socket.until(lambda s: len(s.message_ids()) >= 2)
    assert socket.message_ids() == [second.pk, third.pk]


async def test_the_frames_of_one_hub_step_go_out_in_one_write_in_order(room, user, start_outbox):
    """Several messages handed out in one step (a batch from Redis) cost one write."""
    first, second, third = await stored(room, user, 3)
    outbox, _socket = await start_outbox(room, user, history=[first])
    await wait_until_idle(outbox)
    recorder = outbox._writes.frames = RecordingFrames()
    assert outbox.deliver_now(live_after(second, first)) is True
    assert outbox.deliver_now(live_after(third, second)) is True
    assert recorder.written == []  # not yet: after the step
    await asyncio.sleep(0)  # one turn of the loop
    (written,) = recorder.written
    assert written.index(b'"id":%d' % second.pk) < written.index(b'"id":%d' % third.pk)
