"""Publish numbered notifications at a fixed rate through a service, from its own process.

Run by ``bench.sse`` as ``python -m bench.publisher ...`` with the benchmark's settings.
It prints ``{"ready": true}`` once Django is set up and its connections are warm, waits for
``{"t0": <epoch seconds>}`` on stdin, then calls the service for sequence numbers
``index, index + of, ...`` (below ``count``), number ``seq`` at ``t0 + seq / rate`` or as
soon after as it can. Each notification's title is ``bench <run> <seq> <sent>``, ``sent``
being ``time.time()`` just before the service call: the load generator's latency is its
receive time minus ``sent``. It prints one JSON summary line and exits.
"""

import argparse
import functools
import itertools
import json
import os
import sys
import time


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--mode",
        choices=("streamsite", "streamsite-announce", "baseline", "streamsite-layer", "floor"),
        required=True,
    )
    parser.add_argument("--recipients", required=True, help="JSON file: a list of user ids")
    parser.add_argument("--run", required=True)
    parser.add_argument("--rate", type=float, required=True, help="publishes per second")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--of", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=30)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    import django

    django.setup()
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer
    from django.db import connection

    from bench import baseline
    from notifications import services

    # Told apart from the server's connections when the harness counts them.
    connection.settings_dict["OPTIONS"]["application_name"] = "bench-publisher"
    service = {
        "streamsite": services.notifications_create_many,
        "streamsite-announce": announce,
        "baseline": baseline.notifications_create_many,
        "streamsite-layer": publish_only,
        "floor": publish_floor,
    }[args.mode]
    with open(args.recipients) as file:
        recipients = json.load(file)

    # Warm up the database connection and the channel layer's imports (no one receives).
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    async_to_sync(get_channel_layer().group_send)("bench.warmup", {"type": "bench.warmup"})
    if args.mode == "floor":
        floor_redis().ping()
    print(json.dumps({"ready": True}), flush=True)

    t0 = json.loads(sys.stdin.readline())["t0"]
    deadline = t0 + args.max_seconds
    seqs, sent, durations = [], [], []
    cpu_before = time.process_time()
    stopped_by_deadline = False
    for seq in range(args.index, args.count, args.of):
        delay = t0 + seq / args.rate - time.time()
        if delay > 0:
            time.sleep(delay)
        if time.time() > deadline:
            stopped_by_deadline = True
            break
        started = time.time()
        service(recipients=recipients, title=f"bench {args.run} {seq} {started:.6f}")
        seqs.append(seq)
        sent.append(started)
        durations.append(round(time.time() - started, 6))
    summary = {
        "seqs": seqs,
        "sent": sent,
        "durations": durations,
        "cpu_seconds": round(time.process_time() - cpu_before, 3),
        "stopped_by_deadline": stopped_by_deadline,
    }
    print(json.dumps(summary), flush=True)


def announce(*, recipients: list[int], title: str) -> None:
    """A notification to every user: ``announcement_create``, one row whoever reads it."""
    from notifications.services import announcement_create

    announcement_create(title=title)


#: Made-up notification ids for ``publish_floor``, increasing like real ones.
_ids = itertools.count(1)

#: The Redis counter ``publish_only`` draws its made-up ids from.
LAYER_IDS_KEY = "bench:layer-only-ids"


#: Where made-up ids start: above any id a benchmark's database draws (its sequence keeps
#: counting when a run empties the table, so the table's highest id is not enough).
LAYER_IDS_BASE = 10**12


def made_up_ids(count: int) -> list[int]:
    """``count`` notification ids above every real one and every one drawn before.

    A stream drops an id at or below what its client holds (the user's latest real id):
    made-up ids counting from 1 were all dropped, and a later run (or the second
    publisher) must not repeat the first's. So they come from one Redis counter (the
    benchmark empties its Redis database when it starts), from ``LAYER_IDS_BASE`` up.
    Layer-only runs come last on their streams, so no real id follows one of these.
    """
    _start_layer_ids()
    last = floor_redis().incrby(LAYER_IDS_KEY, count)
    return list(range(last - count + 1, last + 1))


@functools.cache
def _start_layer_ids() -> None:
    """Once per publisher: the counter at ``LAYER_IDS_BASE`` unless a publisher set it."""
    floor_redis().set(LAYER_IDS_KEY, LAYER_IDS_BASE, nx=True)


def publish_only(*, recipients: list[int], title: str) -> int:
    """What ``notifications_create_many`` publishes after its commit, without its writes.

    The server receives the same batches (made-up ids), so this measures the fan-out alone,
    where the database would hold the publisher back.
    """
    from django.utils import timezone

    from notifications.events import user_key
    from notifications.services import BATCH_SIZE
    from streamsite.streaming.hub import HUB_GROUP, batch_message
    from streamsite.streaming.publish import publish

    base = {
        "kind": "created", "title": title, "body": "", "url": "", "level": "info",
        "created_at": timezone.now().isoformat(), "read": False,
    }  # fmt: skip
    for start in range(0, len(recipients), BATCH_SIZE):
        chunk = recipients[start : start + BATCH_SIZE]
        ids = made_up_ids(len(chunk))
        keys = [user_key(user_id) for user_id in chunk]
        # previous 0: each event follows what the stream holds, as the service's do in
        # order (the stream's floor moves up, nothing is read from the database).
        fields = {"id": ids, "unread": [1] * len(chunk), "previous": [0] * len(chunk)}
        publish(HUB_GROUP, batch_message(keys, base, fields))
    return len(recipients)


def publish_floor(*, recipients: list[int], title: str) -> int:
    """One Redis PUBLISH of the notification, to the floor's channel (``bench.floor_sse``).

    The floor is a broadcaster: every stream gets the event, whoever ``recipients`` are.
    """
    from django.utils import timezone

    event = {
        "id": next(_ids), "kind": "created", "title": title, "body": "", "url": "",
        "level": "info", "created_at": timezone.now().isoformat(), "read": False,
    }  # fmt: skip
    floor_redis().publish(os.environ["BENCH_FLOOR_CHANNEL"], json.dumps(event))
    return len(recipients)


@functools.cache
def floor_redis():
    """The publisher's one Redis connection (the floor's channel, the made-up ids)."""
    import redis

    return redis.Redis.from_url(os.environ["REDIS_URL"])


if __name__ == "__main__":
    main()
