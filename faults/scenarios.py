"""The campaign's delivery scenarios: faults under load, then stored ids vs delivered ids.

Every scenario runs the same load: readers (notification streams and chat sockets, spread
over the servers) and writers (chat sockets sending until acked; notifications created in
this process) while a fault happens. Then the writers stop and each reader must be
delivered every stored id (read back from the database) once, in order, within a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async

from faults.clients import ResumingSocket, ResumingStream

ROOM = "faults"
#: How long readers may take to catch up once the writers stop (an outcome, not a pause).
CATCH_UP_SECONDS = 60


@dataclass
class Load:
    streams: list[ResumingStream]
    readers: list[ResumingSocket]
    writers: list[ResumingSocket]
    users: list
    #: The highest ids stored before the scenario: only later ones are owed to its clients.
    floors: tuple[int, int] = (0, 0)
    tasks: list[asyncio.Task] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    notifications: int = 0


async def open_load(urls: list[str], users, cookies, writers: int) -> Load:
    """Readers on every server in turn, and ``writers`` writing sockets."""
    streams, readers = [], []
    for n, cookie in enumerate(cookies):
        rotated = urls[n % len(urls) :] + urls[: n % len(urls)]
        streams.append(ResumingStream([u.replace("ws://", "http://") for u in rotated], cookie))
        readers.append(ResumingSocket(rotated, ROOM, cookie))
    writer_sockets = [
        ResumingSocket(
            urls[n % len(urls) :] + urls[: n % len(urls)], ROOM, cookies[n % len(cookies)]
        )
        for n in range(writers)
    ]
    load = Load(streams, readers, writer_sockets, users)
    load.floors = await sync_to_async(_floors)()
    for client in streams:
        client.floor = load.floors[0]
    for client in readers:
        client.floor = load.floors[1]
    connected = [asyncio.Event() for _ in streams]
    load.tasks += [asyncio.create_task(s.run(c)) for s, c in zip(streams, connected, strict=True)]
    await asyncio.gather(*(s.connect() for s in readers + writer_sockets))
    load.tasks += [asyncio.create_task(s.read()) for s in readers + writer_sockets]
    async with asyncio.timeout(60):
        await asyncio.gather(*(c.wait() for c in connected))
    return load


def _notify(users, n: int) -> None:
    from notifications.services import notification_create

    notification_create(recipient=users[n % len(users)], title=f"faults {n}")


async def write(load: Load, per_writer: int | None) -> None:
    """Writers send (each until acked) until ``load.stop``; each ack also creates a
    notification, so the load follows what the servers take (not a free-running loop that
    piles thousands of notifications up while a server is down)."""

    async def notify() -> None:
        await sync_to_async(_notify)(load.users, load.notifications)
        load.notifications += 1

    await asyncio.gather(*(w.write(per_writer, load.stop, notify) for w in load.writers))


def _floors() -> tuple[int, int]:
    from chat.models import Message
    from notifications.models import Notification

    last = [model.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
            for model in (Notification, Message)]  # fmt: skip
    return last[0], last[1]


def _stored(users, floors) -> tuple[dict[int, set[int]], set[int]]:
    from chat.models import Message
    from notifications.models import Notification

    by_user = {u.pk: set() for u in users}
    for pk, recipient in Notification.objects.filter(
        recipient__in=users, pk__gt=floors[0]
    ).values_list("pk", "recipient_id"):
        by_user[recipient].add(pk)
    return by_user, set(
        Message.objects.filter(room__slug=ROOM, pk__gt=floors[1]).values_list("pk", flat=True)
    )


async def settle(load: Load, name: str, writing: asyncio.Task) -> dict:
    """Stop writing, wait until every reader holds every stored id, and judge."""
    load.stop.set()
    await writing
    by_user, messages = await sync_to_async(_stored)(load.users, load.floors)
    acked = {i for w in load.writers for i in w.acked}
    pairs = [(s, by_user[u.pk]) for s, u in zip(load.streams, load.users, strict=True)]
    pairs += [(r, messages) for r in load.readers]
    deadline = time.monotonic() + CATCH_UP_SECONDS
    for client, want in pairs:
        while not want <= set(client.ids) and time.monotonic() < deadline:
            client.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline - time.monotonic()):
                    await client.changed.wait()
    problems = {"lost": 0, "doubled": 0, "out_of_order": 0, "unknown": 0}
    examples, socket_reordered = [], 0
    for client, want in pairs:
        for kind, ids in client.problems(want).items():
            if kind == "out_of_order" and not client.ordered:
                socket_reordered += len(ids)
                continue
            problems[kind] += len(ids)
            if (ids and len(examples) < 5 and kind != "lost") or (ids and not examples):
                examples.append(f"{type(client).__name__} {kind}: {ids[:5]} of {client.ids}")
    delivered = sum(len(c.ids) for c, _ in pairs)
    return {
        "scenario": name,
        "acked_messages": len(acked),
        "stored_messages": len(messages),
        "acked_not_stored": len(acked - messages),
        "notifications": sum(len(v) for v in by_user.values()),
        "deliveries": delivered,
        "reconnects": sum(c.reconnects for c, _ in pairs),
        **problems,
        "socket_frames_not_in_id_order": socket_reordered,
        "examples": examples,
        "passed": not any(problems.values()) and not (acked - messages),
    }


#: How long the clients may take to stop once cancelled (an outcome: a client that
#: swallowed its cancellation would otherwise hang the campaign without a word).
CLOSE_SECONDS = 30


async def close(load: Load) -> None:
    for task in load.tasks:
        task.cancel()
    if load.tasks:
        _, running = await asyncio.wait(load.tasks, timeout=CLOSE_SECONDS)
        for task in load.tasks:
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: the scenario's judgement is the result
        if running:
            names = sorted({t.get_coro().__qualname__ for t in running})
            raise AssertionError(f"{len(running)} client task(s) ignored cancel: {names}")
    for s in load.readers + load.writers:
        if s.socket is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_SECONDS):
                    await s.socket.disconnect()


async def forced_reconnects(load: Load, count: int) -> None:
    """Each round drops one stream and one socket in turn while the writers go on."""
    for n in range(count):
        load.streams[n % len(load.streams)].drop()
        await load.readers[n % len(load.readers)].drop()
        await asyncio.sleep(0.02)  # spread the drops across the writers' traffic


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


async def kill_supervisor_and_restart(server, workers: set[int]) -> None:
    """SIGKILL the supervisor; its workers end with it (PR_SET_PDEATHSIG); start again."""
    os.kill(server.pid, signal.SIGKILL)
    await asyncio.to_thread(server.process.wait, 10)
    deadline = time.monotonic() + 15
    while not all(_gone(pid) for pid in workers):
        if time.monotonic() > deadline:
            raise AssertionError(f"workers {workers} outlived their supervisor")
        await asyncio.sleep(0.05)  # the kernel ends them: no event to await
    await asyncio.to_thread(server.start)
