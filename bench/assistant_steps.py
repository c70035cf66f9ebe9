"""The steps between a question and its first delta, each timed alone on the same services.

Run in the harness process (the machine otherwise idle, no server), on uvloop, through the
very functions the server calls: ``db_call`` (the streams' thread pool), the assistant's
services and selectors, the hub and the channel layer on Redis. Each step's median is what
it costs at best; the site's added time to first token and per-token latency are, roughly,
sums of them (``docs/benchmarks.md``, "Assistant", says which).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING

from bench.assistant_sequential import summary

if TYPE_CHECKING:
    from bench.assistant import AssistantBench

STEPS = (
    ("thread_hop", "db_call of nothing: one hop to the database threads and back"),
    ("session_user", "the view's get_user: session and user, 2 SELECTs"),
    ("question_ask", "question_ask: limits, question, answer, commit; then the turn published"),
    ("prompt_load", "the answer's context: earlier turns, 1 SELECT"),
    ("ask_one_hop", "what the view does in one hop: session, question_ask, context"),
    ("hub_subscribe", "hub.subscribe of a new key: the group joined in Redis"),
    ("group_send", "publish one event (channels-redis group_send, one member)"),
    ("layer_round_trip", "publish → this process' hub → the subscription (Redis both ways)"),
    ("answer_append", "answers_append of one answer: lock, UPDATE, COMMIT, delta published"),
)


def steps(bench: AssistantBench) -> None:
    import uvloop

    args = bench.args
    [user] = bench.take_users(1)
    started = time.monotonic()
    seconds = uvloop.run(_measure(user, args.steps_repeats))
    bench.record(
        {
            "kind": "assistant-steps",
            "repeats": args.steps_repeats,
            "seconds": round(time.monotonic() - started, 1),
            "steps": {name: summary(values) for name, values in seconds.items()},
            "descriptions": dict(STEPS),
        }
    )


async def _measure(user: dict, repeats: int) -> dict[str, list[float]]:
    from django.contrib.auth import get_user
    from django.contrib.sessions.backends.db import SessionStore
    from django.http import HttpRequest

    from assistant import events, selectors, services
    from assistant.models import Answer, Conversation
    from assistant.views import _ask_stored
    from streamsite.streaming.db import db_call
    from streamsite.streaming.hub import close_hub, get_hub
    from streamsite.streaming.publish import apublish

    times: dict[str, list[float]] = {name: [] for name, _ in STEPS}

    async def timed(name: str, awaitable):
        begun = time.perf_counter()
        result = await awaitable
        times[name].append(time.perf_counter() - begun)
        return result

    def session_request():
        request = HttpRequest()
        request.session = SessionStore(user["cookie"])
        return request

    def session_user():
        return get_user(session_request())

    owner = await db_call(session_user)
    conversation = await db_call(Conversation.objects.get, pk=user["conversation"])
    hub = get_hub()
    probe_key = f"bench.steps.{uuid.uuid4().hex}"
    answers: list[int] = []
    try:
        async with hub.subscribe(probe_key, maxsize=repeats + 10) as probe:
            for i in range(repeats):
                await timed("thread_hop", db_call(lambda: None))
                await timed("session_user", db_call(session_user))
                asked = await timed(
                    "question_ask",
                    db_call(
                        services.question_ask, user=owner, conversation_id=conversation.pk,
                        text=f"bench step {i}", client_id=uuid.uuid4(), model="bench-model",
                    ),
                )  # fmt: skip
                answer = asked.answer
                answers.append(answer.pk)
                await timed("prompt_load", db_call(selectors.prompt_messages, answer))
                await db_call(
                    services.answer_finish, answer_id=answer.pk, status=Answer.Status.COMPLETE
                )
                _, asked, _ = await timed(
                    "ask_one_hop",
                    db_call(
                        _ask_stored, session_request(), None, conversation.pk, f"bench {i}",
                        uuid.uuid4(),
                    ),
                )  # fmt: skip
                answer = asked.answer
                answers.append(answer.pk)
                key = f"bench.steps.{uuid.uuid4().hex}"
                subscription = hub.subscribe(key, maxsize=4)
                await timed("hub_subscribe", subscription.__aenter__())
                await subscription.__aexit__(None, None, None)
                message = events.delta_event(answer.pk, 0, "x")
                await timed("group_send", apublish(probe_key, _hub_message(probe_key, message)))
                probe.take()
                begun = time.perf_counter()
                await apublish(probe_key, _hub_message(probe_key, message))
                await probe.wait(10)
                times["layer_round_trip"].append(time.perf_counter() - begun)
                probe.take()
                await timed(
                    "answer_append",
                    db_call(
                        services.answer_append, answer_id=answer.pk,
                        route=events.Route(conversation.pk), start=0, text="w0@0.000000 ",
                    ),
                )  # fmt: skip
                await db_call(
                    services.answer_finish, answer_id=answer.pk, status=Answer.Status.COMPLETE
                )
                await asyncio.sleep(0.01)
    finally:
        await close_hub()
    return times


def _hub_message(key: str, event: dict) -> dict:
    from streamsite.streaming.hub import event_message

    return event_message(key, event)
