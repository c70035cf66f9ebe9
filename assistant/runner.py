"""Generating answers: one task per answer, owned by the process, not by a request.

A generation belongs to its conversation, not to the connection that asked: closing the tab
does not stop it (the POST's stream is only one of its viewers). It ends when the upstream
finishes or fails, or when a Stop arrives from any process:

- the Stop service cuts and finishes the answer in the database and publishes to the
  answer's control key, where this process' generation listens (through the hub); the
  generation then cancels its reader at once, which closes the upstream HTTP response, so
  the upstream sees the disconnect and stops generating (and billing);
- should that message be lost, the generation's next write finds the answer no longer
  streaming (``services.answer_append`` is guarded by status) and stops the same way.

Text is written by the process' flusher (``assistant.flushes``), with every other answer's
in one transaction per flush, each committed before it is published. The process renews
the liveness mark of its running answers every third of
``ASSISTANT_INTERRUPTED_AFTER_SECONDS`` and marks crashed processes' answers interrupted
(``services.answers_interrupt_stale``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from contextlib import aclosing

from asgiref.sync import SyncToAsync
from django.conf import settings

from assistant import events, limits, selectors, services
from assistant.flushes import Flusher
from assistant.models import Answer
from assistant.upstream import get_provider
from assistant.upstream.base import Provider, UpstreamError, Usage, estimate_tokens
from assistant.watchers import get_watchers
from streamsite.streaming.db import db_call
from streamsite.streaming.hub import get_hub

logger = logging.getLogger(__name__)

#: Consecutive failed writes (the database is away) before a generation gives up; the
#: answer is then interrupted by the sweep, keeping what was stored.
MAX_WRITE_FAILURES = 20


class Generation:
    """One answer being generated in this process."""

    def __init__(
        self, answer: Answer, messages: list[dict], provider: Provider, flusher: Flusher
    ) -> None:
        self.answer_id = answer.pk
        self.conversation_id = answer.conversation_id
        self.route = events.Route.of(answer)
        self.owner_id = answer.owner_id
        self.position = answer.position
        self.messages = messages
        self.provider = provider
        self.pending: list[str] = []
        self.received = 0
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.stop_requested = False
        self.wake = asyncio.Event()
        self.started = time.monotonic()
        self.first_token_at: float | None = None
        self.first_written = False
        self.flusher = flusher
        self.in_flight = False
        self.refused = False  # a write found the answer no longer streaming
        self.write_failures = 0
        self._reader: asyncio.Task | None = None
        self._reader_cancelled = False

    async def run(self) -> None:
        # The upstream is asked first and the control key joined while it thinks (time to
        # first token): a Stop published before the join is in place is not lost, the
        # next write finds the answer stopped.
        self._reader = reader = asyncio.create_task(self._read())
        reader.add_done_callback(lambda _: self.wake.set())
        try:
            async with get_hub().subscribe(
                events.control_key(self.answer_id), maxsize=4
            ) as control:
                control.direct = self._on_control
                stopped = await self._write_until_done(reader)
        finally:
            # Cancelling the reader closes the upstream response (stream_reply runs
            # under aclosing and ``async with`` on the HTTP response).
            self._cancel_reader()
            # asyncio.wait, not a bare await: were this task cancelled meanwhile
            # (shutdown), a bare await would cancel the reader a second time (see
            # _cancel_reader); and the reader's own error is for _finish to read.
            await asyncio.wait([reader])
        await self._finish(reader, stopped)

    def _on_control(self, event: dict) -> bool:
        if event.get("kind") == "stop":
            self.stop_requested = True
            self._cancel_reader()
            self.wake.set()
        return True

    def _cancel_reader(self) -> None:
        """Cancel the reader once: a second cancel would interrupt its cleanup, which is
        closing the upstream response (the connection would stay open, and billing on)."""
        reader = self._reader
        if reader is not None and not reader.done() and not self._reader_cancelled:
            self._reader_cancelled = True
            reader.cancel()

    async def _read(self) -> None:
        async with aclosing(self.provider.stream_reply(self.messages)) as chunks:
            async for chunk in chunks:
                if chunk.text:
                    if self.first_token_at is None:
                        self.first_token_at = time.monotonic()
                    self.pending.append(chunk.text)
                    self.received += len(chunk.text)
                    if not self.in_flight:
                        self.flusher.submit(self)
                if chunk.finish_reason:
                    self.finish_reason = chunk.finish_reason
                if chunk.usage is not None:
                    self.usage = chunk.usage

    async def _write_until_done(self, reader: asyncio.Task) -> bool:
        """Wait until the reader has ended and its text is written; True if stopped.

        The text goes out through the process' flusher (``assistant.flushes``), which
        calls ``take`` and ``written``; this only waits and decides when it is over.
        """
        while True:
            if self.stop_requested or self.refused:
                return True
            if self.write_failures >= MAX_WRITE_FAILURES:
                logger.error("answer %s: giving up, cannot write", self.answer_id)
                return True
            if reader.done() and not self.pending and not self.in_flight:
                return False
            self.wake.clear()
            await self.wake.wait()

    def take(self) -> services.Append | None:
        """The text received since the last write, for the flusher; None if there is none."""
        if self.in_flight or not self.pending or self.refused:
            return None
        text = "".join(self.pending)
        self.pending.clear()
        self.in_flight = True
        first_token_ms = None
        if not self.first_written and self.first_token_at is not None:
            first_token_ms = round((self.first_token_at - self.started) * 1000)
        return services.Append(self.answer_id, self.route, self.position, text, first_token_ms)

    def written(self, append: services.Append, outcome: bool | None) -> None:
        """The flusher's word on ``append``: stored, refused (stopped meanwhile) or failed."""
        self.in_flight = False
        if outcome is None:
            self.write_failures += 1
            self.pending.insert(0, append.text)
        elif outcome:
            self.write_failures = 0
            self.position += len(append.text)
            self.first_written = True
        else:
            self.refused = True
        if self.pending and not self.refused:
            self.flusher.submit(self)
        self.wake.set()

    def _estimated_usage(self) -> Usage:
        prompt = sum(len(str(message.get("content", ""))) for message in self.messages)
        return Usage(
            estimate_tokens(prompt),
            estimate_tokens(self.received),
            estimated=True,
        )

    async def _finish(self, reader: asyncio.Task, stopped: bool) -> None:
        if stopped or reader.cancelled():
            # The Stop service finished the answer; the tokens generated still count.
            usage = self.usage or self._estimated_usage()
            await db_call(limits.usage_add, user_id=self.owner_id, tokens=usage.total_tokens)
            return
        # Asked before the answer's end is published: the asking tab's stream ends with it.
        watched = await get_watchers().anyone_watching(self.conversation_id)
        error = reader.exception()
        if error is None:
            finished = await db_call(
                services.answer_finish,
                answer_id=self.answer_id,
                status=Answer.Status.COMPLETE,
                finish_reason=self.finish_reason or "stop",
                usage=self.usage or self._estimated_usage(),
            )
        else:
            if isinstance(error, UpstreamError):
                reason = error.reason
                logger.info("answer %s failed upstream: %s", self.answer_id, reason)
            else:
                reason = "The assistant failed unexpectedly."
                logger.error("answer %s failed", self.answer_id, exc_info=error)
            finished = await db_call(
                services.answer_finish,
                answer_id=self.answer_id,
                status=Answer.Status.FAILED,
                error=reason,
                usage=self.usage or self._estimated_usage(),
            )
        # A room's answer is seen in the room; the conversation page is the owner's only.
        if finished is not None and not watched and not self.route.room_key:
            await db_call(services.answer_ready_notify, answer_id=self.answer_id)


class Runner:
    """This process' generations, and the upkeep of their liveness marks."""

    def __init__(self) -> None:
        self.generations: dict[int, Generation] = {}
        self._tasks: set[asyncio.Task] = set()
        self._upkeep: asyncio.Task | None = None
        self.flusher = Flusher()

    def start(self, answer: Answer, messages: list[dict]) -> None:
        generation = Generation(answer, messages, get_provider(), self.flusher)
        self.generations[answer.pk] = generation
        task = asyncio.create_task(self._run(generation), name=f"answer-{answer.pk}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.ensure_upkeep()

    async def _run(self, generation: Generation) -> None:
        try:
            await generation.run()
        except asyncio.CancelledError:
            raise  # the process is shutting down: the sweep will mark it interrupted
        except Exception:
            logger.exception("answer %s: generation failed", generation.answer_id)
        finally:
            self.generations.pop(generation.answer_id, None)

    def ensure_upkeep(self) -> None:
        """Start the task that renews liveness marks and interrupts crashed processes' answers."""
        if self._upkeep is None or self._upkeep.done():
            self._upkeep = asyncio.create_task(self._upkeep_forever(), name="assistant-upkeep")

    async def _upkeep_forever(self) -> None:
        period = settings.ASSISTANT_INTERRUPTED_AFTER_SECONDS / 3
        while True:
            try:
                await db_call(services.answers_keep_alive, list(self.generations))
                await db_call(services.answers_interrupt_stale)
            except Exception:
                logger.warning("assistant upkeep failed; trying again", exc_info=True)
            await asyncio.sleep(period)

    async def wait_idle(self) -> None:
        """Wait until every generation of this process has ended (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        tasks = [*self._tasks, *([self._upkeep] if self._upkeep else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.flusher.close()


_runners: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Runner] = weakref.WeakKeyDictionary()


def get_runner() -> Runner:
    """The running loop's runner (one per server process)."""
    loop = asyncio.get_running_loop()
    runner = _runners.get(loop)
    if runner is None:
        runner = _runners[loop] = Runner()
    return runner


async def start_generation(answer_id: int) -> None:
    """Start generating a stored answer in this process."""

    def load():
        answer = Answer.objects.select_related("question").get(pk=answer_id)
        return answer, selectors.prompt_messages(answer)

    answer, messages = await db_call(load)
    get_runner().start(answer, messages)


def start_generation_now(answer: Answer, messages: list[dict]) -> None:
    """Start generating ``answer`` in this process with the ``messages`` already loaded
    (``selectors.prompt_messages``): the view that stored it saves a database round trip."""
    get_runner().start(answer, messages)


def start_generation_soon(answer_id: int) -> None:
    """Start generating ``answer_id`` on the server's event loop, from any thread.

    For synchronous code (a service's on-commit callback in a request's or ``db_call``'s
    thread): it schedules and returns at once, never waiting on the loop (a database
    thread waiting for the loop could wait for itself). With no server loop (a script),
    nothing runs it, and the sweep marks it interrupted.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
        # asgiref leaves the loop of an ended async_to_sync (a test client's request, a
        # script) in the thread: a loop that no longer runs would never start it.
        if loop is None or not loop.is_running():
            logger.warning("answer %s: no server loop to generate it on", answer_id)
            return
        try:
            loop.call_soon_threadsafe(_start_task, answer_id)
        except RuntimeError:  # closed since we looked
            logger.warning("answer %s: no server loop to generate it on", answer_id)
    else:
        _start_task(answer_id)


def _start_task(answer_id: int) -> None:
    task = asyncio.get_running_loop().create_task(start_generation(answer_id))
    _starting.add(task)
    task.add_done_callback(_starting.discard)


#: Tasks loading an answer before its generation starts (kept so they are not collected).
_starting: set[asyncio.Task] = set()


async def shutdown_runner() -> None:
    """The server is stopping: mark this process' answers interrupted now, then stop them.

    Their viewers in other processes learn at once instead of after the sweep's bound,
    and the user can continue them. Text already stored stays.
    """
    runner = _runners.pop(asyncio.get_running_loop(), None)
    if runner is None:
        return
    answer_ids = list(runner.generations)
    if answer_ids:
        try:
            await db_call(services.answers_interrupt, answer_ids, SHUTDOWN_REASON)
        except Exception:
            logger.warning("could not mark answers interrupted at shutdown", exc_info=True)
    await runner.close()


#: What an answer cut short by a graceful shutdown says.
SHUTDOWN_REASON = "The server restarted while answering."


async def close_runner() -> None:
    runner = _runners.pop(asyncio.get_running_loop(), None)
    if runner is not None:
        await runner.close()
