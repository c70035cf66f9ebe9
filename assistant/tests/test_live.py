"""The assistant on real servers: processes, disconnects, crashes, exact resume over HTTP.

Each test starts its own server processes pointed at the fake upstream (its own process),
so the generation, its viewers and its Stop cross real process boundaries.
"""

import json
import os
import random
import signal
import time

import pytest
from asgiref.sync import sync_to_async

from assistant import services
from assistant.models import Answer
from streamsite.testing.assistant_client import AssistantClient, EventStream
from streamsite.testing.services import skip_or_fail

pytestmark = pytest.mark.live_server

Status = Answer.Status
WORDS = [f"word{i}é😀 " for i in range(60)]


def uses_redis() -> bool:
    return bool(os.environ.get("REDIS_URL"))


@pytest.fixture
def start_server(live_server_factory, fake_upstream):
    """``start_server(kind, **env)``: a server whose assistant asks the fake upstream."""

    def start(kind="uvicorn", **env):
        env = {
            "LLM_BASE_URL": fake_upstream.base_url,
            "LLM_TIMEOUT_SECONDS": "5",
            "ASSISTANT_FLUSH_MILLISECONDS": "10",
            **{name: str(value) for name, value in env.items()},
        }
        return live_server_factory(kind, **env)

    return start


@pytest.fixture
async def conversation_id(user):
    conversation = await sync_to_async(services.conversation_create)(owner=user, title="live")
    return conversation.pk


async def stored(answer_id: int) -> Answer:
    return await Answer.objects.aget(pk=answer_id)


@pytest.mark.parametrize("kind", ["daphne", "uvicorn"])
async def test_an_answer_streams_over_http_and_is_stored(
    start_server, fake_upstream, user, conversation_id, kind
):
    server = start_server(kind)
    await fake_upstream.ascript(tokens=WORDS[:10], usage="separate")
    tab = await AssistantClient.open(server, user)
    try:
        stream = await tab.ask(conversation_id, "Tell me")
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        assert stream.response.headers["x-accel-buffering"] == "no"
        assert "content-encoding" not in stream.response.headers
        turn = await stream.until(lambda e: e["event"] == "turn")
        answer_id = int(turn["id"].split(":")[0])
        done = await stream.until_done()
        assert await stream.until(lambda e: e["data"] == "[DONE]")
        answer = await stored(answer_id)
        assert done["status"] == "complete" and answer.text == "".join(WORDS[:10])
        assert stream.text_of(answer_id) == answer.text
    finally:
        await tab.aclose()


async def test_cuts_at_random_places_resume_by_last_event_id_exactly(
    start_server, fake_upstream, user, conversation_id
):
    """50 cuts, each resumed with Last-Event-ID: the text is byte-identical, no gap, no repeat."""
    server = start_server()
    rng = random.Random(50)
    tab = await AssistantClient.open(server, user)
    cuts = 0
    try:
        while cuts < 50:
            await fake_upstream.ascript(tokens=WORDS, token_delay=0.004)
            posted = await tab.ask(conversation_id, f"Round {cuts}")
            turn = await posted.until(lambda e: e["event"] == "turn")
            answer_id = int(turn["id"].split(":")[0])
            await posted.aclose()  # the asking tab goes away at once: the answer goes on
            received, cursor = "", f"{answer_id}:0"
            while True:
                stream = await tab.follow(conversation_id, after=cursor)
                limit = rng.randint(1, 2000)
                finished = False
                while stream.bytes_read < limit and not finished:
                    event = await stream.next_event(15)
                    if event is None:
                        break
                    finished = event["event"] == "done"
                received += stream.text_of(answer_id)
                cursor = stream.last_id() or cursor
                await stream.aclose()
                if finished:
                    break
                cuts += 1
            answer = await stored(answer_id)
            assert answer.status == Status.COMPLETE
            assert received == answer.text == "".join(WORDS)
    finally:
        await tab.aclose()


async def test_ten_viewers_on_two_processes_make_one_upstream_request(
    start_server, fake_upstream, user, conversation_id
):
    if not uses_redis():
        skip_or_fail("two processes need REDIS_URL")
    first, second = start_server(), start_server()
    await fake_upstream.ascript(tokens=WORDS[:30], stall_after=10, stall_seconds=2)
    tabs = [await AssistantClient.open(server, user) for server in (first, second) * 5]
    try:
        viewers = [await tab.follow(conversation_id) for tab in tabs[:-1]]
        posted = await tabs[0].ask(conversation_id, "Everyone sees this")
        turn = await posted.until(lambda e: e["event"] == "turn")
        answer_id = int(turn["id"].split(":")[0])
        so_far = len("".join(WORDS[:10]))
        await posted.until(lambda e: e.get("id") == f"{answer_id}:{so_far}")
        # The tenth tab (on the second process) opens mid-answer, while the upstream
        # pauses: the text so far, then the rest live, with no seam.
        late = await tabs[-1].follow(conversation_id)
        first = await late.until(lambda e: e["event"] == "delta")
        assert first["id"] == f"{answer_id}:{so_far}"
        assert (await posted.until_done())["status"] == "complete"
        for viewer in [*viewers, late]:
            assert (await viewer.until_done())["status"] == "complete"
            assert viewer.text_of(answer_id) == "".join(WORDS[:30])
        assert len(await fake_upstream.arequests()) == 1
    finally:
        for tab in tabs:
            await tab.aclose()


async def test_stop_from_the_other_process_closes_the_upstream_and_cuts_the_text(
    start_server, fake_upstream, user, conversation_id
):
    if not uses_redis():
        skip_or_fail("two processes need REDIS_URL")
    first, second = start_server(), start_server()
    asker = await AssistantClient.open(first, user)
    stopper = await AssistantClient.open(second, user)
    delays = []
    try:
        for attempt in range(5):
            await fake_upstream.ascript(tokens=WORDS, stall_after=5, stall_seconds=None)
            posted = await asker.ask(conversation_id, f"Stop me {attempt}")
            turn = await posted.until(lambda e: e["event"] == "turn")
            answer_id = int(turn["id"].split(":")[0])
            shown = "".join(WORDS[:5])
            cursor = f"{answer_id}:{len(shown)}"
            await posted.until(lambda e, at=cursor: e.get("id") == at)
            asked_at = time.monotonic()
            result = await stopper.stop(conversation_id, answer_id, position=len(shown) - 3)
            record = await fake_upstream.await_disconnected(-1, timeout=5)
            delays.append(record["disconnected_at"] - asked_at)
            assert result == {"answer": answer_id, "status": "stopped", "position": len(shown) - 3}
            done = await posted.until_done()
            assert done["status"] == "stopped" and done["position"] == len(shown) - 3
            assert (await stored(answer_id)).text == shown[:-3]
            await posted.aclose()
        print("stop to upstream disconnect, s:", [round(d, 4) for d in delays])
    finally:
        await asker.aclose()
        await stopper.aclose()


async def test_a_killed_process_leaves_its_answer_interrupted_and_continue_works(
    start_server, fake_upstream, user, conversation_id
):
    """kill -9 mid-answer: another process marks it interrupted within the bound."""
    bound = 3
    doomed = start_server(ASSISTANT_INTERRUPTED_AFTER_SECONDS=bound)
    await fake_upstream.ascript(tokens=WORDS, stall_after=4, stall_seconds=None)
    tab = await AssistantClient.open(doomed, user)
    posted = await tab.ask(conversation_id, "Crash")
    turn = await posted.until(lambda e: e["event"] == "turn")
    answer_id = int(turn["id"].split(":")[0])
    await posted.until(lambda e: e.get("id") == f"{answer_id}:{len(''.join(WORDS[:4]))}")
    os.killpg(doomed.process.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    # The survivor notices within the bound, plus its first sweep and its own start-up.
    deadline = bound + bound / 3 + 10
    await tab.aclose()
    survivor = start_server(ASSISTANT_INTERRUPTED_AFTER_SECONDS=bound)
    tab = await AssistantClient.open(survivor, user)
    try:
        viewer = await tab.follow(conversation_id, after=f"{answer_id}:0")
        done = await viewer.until_done(30)
        assert done["status"] == "interrupted" and done["error"]
        elapsed = time.monotonic() - killed_at
        print(f"interrupted {elapsed:.1f} s after the kill (bound {bound} s)")
        assert elapsed < deadline
        answer = await stored(answer_id)
        assert answer.text == "".join(WORDS[:4])
        await fake_upstream.ascript(tokens=["and ", "more."])
        response = await tab.http.post(
            f"/assistant/{conversation_id}/answers/{answer_id}/continue",
            headers={"Accept": "application/json"},
        )
        assert response.status_code == 201
        follow_id = response.json()["answer"]
        done = await viewer.until(
            lambda e: e["event"] == "done" and e["id"].startswith(f"{follow_id}:"), 15
        )
        assert (await stored(follow_id)).text == "and more."
    finally:
        await tab.aclose()


async def test_a_graceful_shutdown_interrupts_its_answers_at_once(
    start_server, fake_upstream, user, conversation_id
):
    """SIGTERM (a deploy): the process marks its answers interrupted before it exits."""
    # Neither the sweep nor the upstream timeout can end it first.
    server = start_server(ASSISTANT_INTERRUPTED_AFTER_SECONDS=600, LLM_TIMEOUT_SECONDS=60)
    await fake_upstream.ascript(tokens=WORDS, stall_after=3, stall_seconds=None)
    tab = await AssistantClient.open(server, user)
    try:
        posted = await tab.ask(conversation_id, "Deploy now")
        turn = await posted.until(lambda e: e["event"] == "turn")
        answer_id = int(turn["id"].split(":")[0])
        await posted.until(lambda e: e.get("id") == f"{answer_id}:{len(''.join(WORDS[:3]))}")
        await sync_to_async(server.stop)()
    finally:
        await tab.aclose()
    answer = await stored(answer_id)
    assert answer.status == Status.INTERRUPTED and "restarted" in answer.error
    assert answer.text == "".join(WORDS[:3])
    assert (await fake_upstream.arequests())[0]["disconnected"]


async def test_closing_the_tab_does_not_stop_the_answer_and_a_notification_arrives(
    start_server, fake_upstream, user, conversation_id
):
    server = start_server()
    await fake_upstream.ascript(tokens=WORDS[:20], token_delay=0.03)
    tab = await AssistantClient.open(server, user)
    try:
        bell = await EventStream.open(
            tab.http, tab.http.build_request("GET", "/notifications/stream/?last_event_id=0")
        )
        posted = await tab.ask(conversation_id, "Leave")
        turn = await posted.until(lambda e: e["event"] == "turn")
        answer_id = int(turn["id"].split(":")[0])
        await posted.until(lambda e: e["event"] == "delta")
        await posted.aclose()  # the last viewer of the conversation goes
        note = await bell.until(lambda e: e["event"] == "notification", 20)
        assert json.loads(note["data"])["title"] == "Your answer is ready"
        await bell.aclose()
    finally:
        await tab.aclose()
    answer = await stored(answer_id)
    assert answer.status == Status.COMPLETE and answer.text == "".join(WORDS[:20])
    assert not (await fake_upstream.arequests())[0].get("disconnected_at")
