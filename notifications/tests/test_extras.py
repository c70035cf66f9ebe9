"""Other apps' events on the notification stream (notifications/extras.py): the newest
version of each thing only, never an older one after a newer, and a snapshot on connect."""

import json

import pytest
from asgiref.sync import sync_to_async

from notifications import extras, services
from notifications.stream_state import StreamState
from notifications.tests.streaming import Stream
from streamsite.streaming.hub import close_hub


def extra(key: int, seq: int, *, active: bool = True) -> dict:
    return extras.extra_event("job", key, seq, {"id": key, "seq": seq}, active=active)


def sent(chunk: bytes) -> list[tuple[str, dict]]:
    events = []
    for block in chunk.decode().strip().split("\n\n"):
        name, data = block.split("\n")
        events.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return events


def test_versions_that_arrive_together_send_only_the_newest():
    state = StreamState(0)
    for seq in (3, 1, 5, 4):
        state.extra_take(extra(1, seq))
    state.extra_take(extra(2, 2))
    assert sent(state.extras_flush()) == [
        ("job", {"id": 1, "seq": 5}),
        ("job", {"id": 2, "seq": 2}),
    ]


def test_an_older_or_repeated_version_is_never_sent_after_a_newer_one():
    state = StreamState(0)
    state.extra_take(extra(1, 5))
    state.extras_flush()
    state.extra_take(extra(1, 5))
    state.extra_take(extra(1, 4))
    assert state.extras_flush() == b""
    state.extra_take(extra(1, 6, active=False))
    assert sent(state.extras_flush()) == [("job", {"id": 1, "seq": 6})]


def test_active_things_are_remembered_until_they_finish():
    state = StreamState(0)
    state.extra_take(extra(1, 1))
    state.extras_flush()
    assert state.extras_active == {("job", 1)}
    state.extra_take(extra(1, 2, active=False))
    state.extras_flush()
    assert state.extras_active == set()


def test_only_extra_events_go_through_the_service(user):
    with pytest.raises(ValueError, match="extra_event"):
        services.stream_extra_publish(user_id=user.pk, event={"kind": "created"})
    with pytest.raises(ValueError, match="plain words"):
        extras.extra_event("job\ndata: x", 1, 1, {}, active=True)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("channel_layer")
async def test_live_extras_reach_the_stream_in_order(user, settings):
    settings.SSE_KEEPALIVE_SECONDS = 30
    publish = sync_to_async(services.stream_extra_publish)
    stream = await Stream(user.pk, None).live()
    try:
        for seq in (1, 2, 3):
            await publish(user_id=user.pk, event=extra(9, seq, active=seq < 3))
        last = await stream.reader.until(lambda e: json.loads(e["data"]).get("seq") == 3)
        seqs = [json.loads(e["data"])["seq"] for e in stream.reader.events if e["event"] == "job"]
        assert seqs == sorted(seqs) and seqs[-1] == 3
        assert last["event"] == "job"
    finally:
        await stream.disconnect()
        await close_hub()
