"""Measure what a room's commit-order lock costs a chat send (docs/architecture.md).

``DATABASE_URL=postgres://.../<db> REDIS_URL=redis://.../<n> python -m bench.send_lock``
against a database of its own (it migrates it, and writes users, rooms and messages). Each
figure is measured with ``chat.services.message_post`` as it is (the room's row locked
before the insert, ``_lock_room_for_ids``) and with the lock replaced by nothing, in
alternating rounds so that drift of the machine hits both alike:

1. one sender: the time of one send (median and 95th percentile), and of the lock's
   statement alone (what the lock adds to a send that waits for nobody);
2. ``--threads`` senders with their own connections to one room (they wait for each
   other's commits with the lock), then to a room each (they never do): sends a second.

Only the given database and Redis are touched.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
import uuid
from contextlib import contextmanager


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=400, help="sends per round (default 400)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per variant (default 3)")
    parser.add_argument("--threads", type=int, default=4, help="concurrent senders (default 4)")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        parser.error("DATABASE_URL must name a PostgreSQL database of the benchmark's own")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "streamsite.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    run(args)


@contextmanager
def lock(enabled: bool):
    """``message_post`` with its room lock (``enabled``) or without it."""
    from chat import services

    original = services._lock_room_for_ids
    if not enabled:
        services._lock_room_for_ids = lambda room_id: None
    try:
        yield
    finally:
        services._lock_room_for_ids = original


def send_times(user, room, count: int) -> list[float]:
    from chat import services

    times = []
    for n in range(count):
        started = time.perf_counter()
        services.message_post(user=user, room=room, client_id=uuid.uuid4(), body=f"bench {n}")
        times.append(time.perf_counter() - started)
    return times


def lock_times(room, count: int) -> list[float]:
    """The lock's statement alone, each in a transaction of its own, as a send takes it."""
    from django.db import transaction

    from chat import services

    times = []
    for _ in range(count):
        with transaction.atomic():
            started = time.perf_counter()
            services._lock_room_for_ids(room.pk)
            times.append(time.perf_counter() - started)
    return times


def sends_per_second(pairs, count: int) -> float:
    """``count`` sends by each (user, room) pair, each pair in its own thread and connection."""
    from django.db import connections

    barrier = threading.Barrier(len(pairs) + 1)

    def sender(user, room):
        barrier.wait()
        try:
            send_times(user, room, count)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=sender, args=pair) for pair in pairs]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return len(pairs) * count / (time.perf_counter() - started)


def run(args) -> None:
    from django.contrib.auth import get_user_model

    from chat.models import Membership, Room

    tag = uuid.uuid4().hex[:8]
    users = [
        get_user_model().objects.create(username=f"bench-{tag}-{n}") for n in range(args.threads)
    ]
    rooms = [
        Room.objects.create(slug=f"bench-{tag}-{n}", name="bench") for n in range(args.threads)
    ]
    for room in rooms:
        Membership.objects.bulk_create(Membership(room=room, user=user) for user in users)
    send_times(users[0], rooms[0], 50)  # warm the connection and the caches
    single: dict[bool, list[float]] = {True: [], False: []}
    shared: dict[bool, list[float]] = {True: [], False: []}
    apart: dict[bool, list[float]] = {True: [], False: []}
    alone = []
    for _round in range(args.rounds):
        alone += lock_times(rooms[0], args.sends)
        for enabled in (True, False):
            with lock(enabled):
                single[enabled] += send_times(users[0], rooms[0], args.sends)
                per_thread = args.sends // args.threads
                shared[enabled].append(sends_per_second([(u, rooms[0]) for u in users], per_thread))
                pairs = list(zip(users, rooms, strict=True))
                apart[enabled].append(sends_per_second(pairs, per_thread))
    print(f"{args.rounds} rounds of {args.sends} sends, {args.threads} threads")
    alone.sort()
    print(
        f"the lock's statement alone: median {statistics.median(alone) * 1000:.3f} ms, "
        f"p95 {alone[int(len(alone) * 0.95)] * 1000:.3f} ms"
    )
    print("| variant | one send, median | p95 | one room, sends/s | a room each, sends/s |")
    print("|---|---|---|---|---|")
    for enabled in (True, False):
        times = sorted(single[enabled])
        p95 = times[int(len(times) * 0.95)]
        print(
            f"| {'room lock' if enabled else 'no lock'} | {statistics.median(times) * 1000:.2f} ms "
            f"| {p95 * 1000:.2f} ms | {statistics.median(shared[enabled]):.0f} "
            f"| {statistics.median(apart[enabled]):.0f} |"
        )


if __name__ == "__main__":
    main()
