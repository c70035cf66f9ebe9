"""Generations against a real (fake) upstream over HTTP: stored as they stream, stopped, failed.

The fake upstream is an OpenAI-compatible server in its own process
(``assistant.testing.fake_upstream``); the generation runs in this test's event loop, as it
would in a server process.
"""

import asyncio
import threading

import pytest
from asgiref.sync import SyncToAsync, sync_to_async

from assistant import services
from assistant.models import Answer
from assistant.runner import close_runner, get_runner, start_generation, start_generation_soon
from assistant.tests.streaming import Viewer
from notifications.models import Notification
from streamsite.streaming.hub import close_hub

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("channel_layer", "close_upstream_clients"),
]

Status = Answer.Status
TOKENS = ["Hel", "lo", ", wor", "ld ", "é", "😀", " done."]


@pytest.fixture(autouse=True)
async def upstream(fake_upstream, settings):
    settings.LLM_BASE_URL = fake_upstream.base_url
    settings.LLM_TIMEOUT_SECONDS = 2
    settings.ASSISTANT_FLUSH_MILLISECONDS = 20
    yield fake_upstream
    await close_runner()
    await close_hub()


async def asked(ask, text="Say hello"):
    return await sync_to_async(ask)(text)


async def stored(answer_id) -> Answer:
    return await Answer.objects.aget(pk=answer_id)


async def generate(ask, upstream, **script) -> tuple[Answer, dict, Viewer]:
    """Ask, generate with ``script``, follow it to the end; the answer as stored, done's data."""
    await upstream.ascript(**script)
    answer = await asked(ask)
    viewer = Viewer(answer.conversation_id, after=[(answer.pk, 0)], only=answer.pk)
    await start_generation(answer.pk)
    done = await viewer.until_done(15)
    return await stored(answer.pk), done, viewer


async def test_a_reply_streams_in_order_and_is_stored_complete_with_usage(ask, upstream):
    answer, done, viewer = await generate(
        ask, upstream, tokens=TOKENS, usage="separate", prompt_tokens=11, completion_tokens=7
    )
    assert answer.status == Status.COMPLETE and answer.text == "".join(TOKENS)
    assert viewer.text_of(answer.pk) == answer.text and answer.position == len(answer.text)
    assert (answer.prompt_tokens, answer.completion_tokens, answer.usage_estimated) == (
        11,
        7,
        False,
    )
    assert answer.first_token_ms is not None and answer.finish_reason == "stop"
    assert done["status"] == "complete" and done["usage"]["total_tokens"] == 18
    [request] = await upstream.arequests()
    assert request["body"]["stream"] is True
    assert request["body"]["stream_options"] == {"include_usage": True}
    assert request["body"]["messages"][-1] == {"role": "user", "content": "Say hello"}


async def test_without_usage_from_the_upstream_it_is_estimated(ask, upstream):
    answer, done, _ = await generate(ask, upstream, tokens=TOKENS, usage="none")
    assert answer.usage_estimated and answer.completion_tokens > 0
    assert done["usage"]["estimated"] is True


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        ({"status": 500, "body": {"error": {"message": "boom"}}}, "500"),
        ({"status": 429, "body": {"error": {"message": "slow down"}}}, "rate"),
        ({"tokens": TOKENS, "error_after": 3, "error_message": "overloaded"}, "overloaded"),
        ({"tokens": TOKENS, "stall_after": 3, "stall_seconds": None}, "no data"),
        ({"tokens": TOKENS, "end_early": True}, "ended"),
    ],
)
async def test_every_upstream_failure_fails_the_answer_keeping_its_text(
    ask, upstream, script, reason
):
    answer, done, viewer = await generate(ask, upstream, **script)
    assert answer.status == Status.FAILED and reason in answer.error.lower()
    assert done["status"] == "failed" and done["error"] == answer.error
    assert viewer.text_of(answer.pk) == answer.text
    if "error_after" in script or "stall_after" in script:
        assert answer.text == "".join(TOKENS[:3])


async def test_a_refused_connection_fails_the_answer(ask, settings):
    settings.LLM_BASE_URL = "http://127.0.0.1:1/v1"  # nothing listens on port 1
    answer = await asked(ask)
    viewer = Viewer(answer.conversation_id, after=[(answer.pk, 0)], only=answer.pk)
    await start_generation(answer.pk)
    done = await viewer.until_done(15)
    assert done["status"] == "failed" and "connect" in done["error"].lower()


async def test_stop_closes_the_upstream_request_and_keeps_the_text_the_client_showed(
    ask, upstream, user
):
    await upstream.ascript(tokens=TOKENS, stall_after=4, stall_seconds=None)
    answer = await asked(ask)
    viewer = Viewer(answer.conversation_id, after=[(answer.pk, 0)], only=answer.pk)
    await start_generation(answer.pk)
    shown = "".join(TOKENS[:4])
    await viewer.reader.until(
        lambda e: e["event"] == "delta" and e["id"].endswith(f":{len(shown)}")
    )
    await sync_to_async(services.answer_stop)(user=user, answer_id=answer.pk, position=5)
    record = await upstream.await_disconnected(0, timeout=5)
    assert record["disconnected_at"] is not None
    done = await viewer.until_done()
    assert done["status"] == "stopped" and done["position"] == 5
    answer = await stored(answer.pk)
    assert answer.text == shown[:5] and answer.status == Status.STOPPED
    await idle()


async def test_a_stop_whose_message_was_lost_still_stops_at_the_next_write(
    ask, upstream, user, monkeypatch
):
    """The control message is lost; the status guard on the next write stops it."""
    from streamsite.streaming import publish as publish_module

    await upstream.ascript(tokens=TOKENS * 20, token_delay=0.02)
    answer = await asked(ask)
    viewer = Viewer(answer.conversation_id, after=[(answer.pk, 0)], only=answer.pk)
    await start_generation(answer.pk)
    await viewer.reader.until(lambda e: e["event"] == "delta")
    real = publish_module.publish

    def drop_control(group, message):
        if not group.startswith("assistant.answer."):
            real(group, message)

    monkeypatch.setattr(publish_module, "publish", drop_control)
    await sync_to_async(services.answer_stop)(user=user, answer_id=answer.pk)
    await upstream.await_disconnected(0, timeout=5)
    assert (await stored(answer.pk)).status == Status.STOPPED


async def test_closing_every_viewer_does_not_stop_the_answer_and_its_owner_is_notified(
    ask, upstream, user
):
    await upstream.ascript(tokens=TOKENS, token_delay=0.05)
    answer = await asked(ask)
    viewer = Viewer(answer.conversation_id, after=[(answer.pk, 0)], only=answer.pk)
    await start_generation(answer.pk)
    await viewer.reader.until(lambda e: e["event"] == "delta")
    await viewer.close()
    await idle(15)
    answer = await stored(answer.pk)
    assert answer.status == Status.COMPLETE and answer.text == "".join(TOKENS)
    note = await Notification.objects.aget(recipient=user)
    assert note.title == "Your answer is ready" and note.url.endswith(f"#answer-{answer.pk}")


async def test_an_answer_finished_in_view_sends_no_notification(ask, upstream, user):
    await generate(ask, upstream, tokens=TOKENS)
    await idle()
    assert not await Notification.objects.filter(recipient=user).aexists()


async def test_a_continuation_sends_the_partial_text_upstream(ask, upstream, user):
    answer, _, _ = await generate(ask, upstream, tokens=TOKENS, stall_after=2, stall_seconds=None)
    assert answer.status == Status.FAILED  # stalled past the timeout, text kept
    follow = await sync_to_async(services.answer_retry)(
        user=user, answer_id=answer.pk, continues=True
    )
    await upstream.ascript(tokens=["more"])
    viewer = Viewer(answer.conversation_id, after=[(follow.pk, 0)], only=follow.pk)
    await start_generation(follow.pk)
    assert (await viewer.until_done())["status"] == "complete"
    request = (await upstream.arequests())[-1]
    messages = request["body"]["messages"]
    assert messages[-2] == {"role": "assistant", "content": "".join(TOKENS[:2])}
    assert "Continue" in messages[-1]["content"]


async def idle(seconds: float = 10) -> None:
    """Wait, with a deadline, until every generation of this loop has ended."""
    async with asyncio.timeout(seconds):
        await get_runner().wait_idle()
    assert not get_runner().generations


def test_a_generation_is_not_scheduled_on_a_loop_that_has_ended(caplog):
    """Regression: asgiref leaves an ended async_to_sync's loop in its thread (a test
    client's request to an async view did it in the main thread), and scheduling there
    raised "Event loop is closed" in the on-commit callback of the service that asked."""
    ended = asyncio.new_event_loop()
    ended.close()
    errors = []

    def in_a_thread():
        SyncToAsync.threadlocal.main_event_loop = ended
        try:
            start_generation_soon(10**9)
        except Exception as error:
            errors.append(error)

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join(10)
    assert errors == []
    assert "no server loop to generate it on" in caplog.text


async def test_a_user_deleted_mid_answer_ends_the_generation_quietly(ask, upstream, user, caplog):
    """Deleting an account deletes its answers: the generation stops, and nothing errs."""
    await upstream.ascript(tokens=TOKENS * 20, token_delay=0.02)
    answer = await asked(ask)
    viewer = Viewer(answer.conversation_id, after=[(answer.pk, 0)], only=answer.pk)
    await start_generation(answer.pk)
    await viewer.reader.until(lambda e: e["event"] == "delta")
    await viewer.close()
    await user.adelete()
    await idle()
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert not await Answer.objects.filter(pk=answer.pk).aexists()
    await upstream.await_disconnected(0, timeout=5)
