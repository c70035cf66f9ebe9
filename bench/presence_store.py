"""What one presence change costs as a room grows, and what a crowd joining costs.

``REDIS_URL=redis://127.0.0.1:6379/<db> python -m bench.presence_store`` prints, for rooms
of 100, 1,000 and 10,000 people, the time of one join or leave through the store (one Lua
script call, round trip included), then how many round trips and how long 10,000 users
joining one room at once take through one process' tracker (group commit). It uses rooms
of its own (random ids) and deletes their keys afterwards.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time

SIZES = (100, 1000, 10_000)
CHANGES = 200
CROWD = 10_000


async def main() -> None:
    from chat.presence import (
        PresenceTracker,
        presence_key,
        presence_online_key,
        presence_state_key,
    )
    from chat.presence.store import Change, RedisStore
    from streamsite.streaming.redis import close_redis, get_redis

    client = get_redis()
    store = RedisStore(client)
    rooms = []
    try:
        for size in SIZES:
            room = 10**12 + secrets.randbelow(10**9)
            rooms.append(room)
            everyone = [f"{n}|bench|user{n:05d}" for n in range(size)]
            await store.apply([Change(room, everyone, [], [])], 60_000)
            started = time.perf_counter()
            for n in range(CHANGES):
                member = f"{10**7 + n}|bench|newcomer{n:05d}"
                await store.apply([Change(room, [member], [], [])], 60_000)
                await store.apply([Change(room, [], [member], [])], 60_000)
            each = (time.perf_counter() - started) / (2 * CHANGES) * 1e6
            print(f"room of {size:>6,}: {each:6.0f} us per join or leave (round trip included)")

        room = 10**12 + secrets.randbelow(10**9)
        rooms.append(room)
        tracker = PresenceTracker()
        started = time.perf_counter()
        await asyncio.gather(*(tracker.join(room, n, f"crowd{n:05d}") for n in range(CROWD)))
        took = time.perf_counter() - started
        print(
            f"{CROWD:,} joins at once through one tracker: {took:.2f} s, "
            f"{tracker.round_trips} store round trips"
        )
        await tracker.close()
    finally:
        for room in rooms:
            await client.delete(
                presence_key(room), presence_online_key(room), presence_state_key(room)
            )
        await close_redis()


if __name__ == "__main__":
    if not os.environ.get("REDIS_URL"):
        sys.exit("REDIS_URL must name a Redis database")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "streamsite.settings")
    import django

    django.setup()
    asyncio.run(main())
