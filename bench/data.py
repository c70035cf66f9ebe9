"""The benchmark's database: created fresh, filled with users and sessions, dropped at the end.

Functions below ``setup_django`` need Django set up with ``bench.settings``.
"""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta

PG = ["-h", "127.0.0.1", "-U", "postgres"]
#: Marks the harness' own PostgreSQL connections, so they are not counted as the server's.
HARNESS_APPLICATION = "bench-harness"


def create_database(name: str) -> str:
    """Create database ``name``; return its DATABASE_URL."""
    subprocess.run(["createdb", *PG, name], check=True, capture_output=True, text=True)
    return f"postgres://postgres@127.0.0.1:5432/{name}"


def drop_database(name: str) -> None:
    subprocess.run(
        ["dropdb", *PG, "--if-exists", "--force", name], check=False, capture_output=True
    )


def setup_django(environment: dict[str, str]) -> None:
    """Configure Django in this process with the servers' environment, then migrate."""
    os.environ.update(environment)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    connection.settings_dict["OPTIONS"]["application_name"] = HARNESS_APPLICATION
    call_command("migrate", interactive=False, verbosity=0)


def close_django() -> None:
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        connection.close()
        connection.close_pool()


def create_users(count: int, prefix: str = "bench") -> list[int]:
    """Create ``count`` active users (one password hash for all); return their ids in order."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    user_model = get_user_model()
    password = make_password("bench-password-not-secret")
    users = user_model.objects.bulk_create(
        [user_model(username=f"{prefix}{i:06d}", password=password) for i in range(count)],
        batch_size=2000,
    )
    return [user.pk for user in users]


def create_sessions(user_ids: list[int]) -> list[str]:
    """A logged-in session per user, as ``login()`` would leave it; return the cookies."""
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.contrib.sessions.backends.base import VALID_KEY_CHARS
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session
    from django.utils import timezone
    from django.utils.crypto import get_random_string

    if not user_ids:
        return []
    # Every user has the same password hash, so the same session auth hash.
    auth_hash = get_user_model().objects.get(pk=user_ids[0]).get_session_auth_hash()
    store = SessionStore()
    expires = timezone.now() + timedelta(days=1)
    keys, rows = [], []
    for user_id in user_ids:
        key = get_random_string(32, VALID_KEY_CHARS)
        data = {
            SESSION_KEY: str(user_id),
            BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
            HASH_SESSION_KEY: auth_hash,
        }
        rows.append(Session(session_key=key, session_data=store.encode(data), expire_date=expires))
        keys.append(key)
    Session.objects.bulk_create(rows, batch_size=2000)
    return keys


def delete_notifications() -> None:
    """Empty the notifications table (and the tables that refer to it), then the unread
    counters the service keeps from it."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE notifications_notification CASCADE")
    rebuild_unread_counters()


def rebuild_unread_counters() -> bool:
    """Recompute the service's per-user unread counters from the rows, if it keeps any
    (``notifications.services.unread_counters_rebuild``): rows written around the service
    (history, a truncation) leave them wrong otherwise. Return whether there were any."""
    from notifications import services

    rebuild = getattr(services, "unread_counters_rebuild", None)
    if rebuild is None:
        return False
    rebuild()
    return True


def insert_notifications(user_id: int, count: int) -> None:
    """Give ``user_id`` ``count`` notifications in one INSERT ... SELECT (half of them read)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO notifications_notification
                (recipient_id, title, body, url, level, created_at, read_at)
            SELECT %s,
                   'Export row ' || g,
                   'Body of notification ' || g || ', long enough to look like a real one.',
                   '/notifications/',
                   'info',
                   now() - g * interval '1 second',
                   CASE WHEN g %% 2 = 0 THEN now() END
            FROM generate_series(1, %s) AS g
            """,
            [user_id, count],
        )
        cursor.execute("ANALYZE notifications_notification")


def insert_unread_history(
    user_ids: list[int],
    per_user: int,
    *,
    batch_rows: int = 1_000_000,
    progress=None,
    settle: bool = True,
) -> None:
    """Give every user ``per_user`` unread notifications, older than anything a run sends:
    one ``INSERT ... SELECT generate_series`` per batch of users (about ``batch_rows`` rows),
    calling ``progress(rows so far)`` after each; then refresh the planner's statistics.

    ``settle`` then writes the load out and warms the pages the next inserts touch
    (``settle_table``, ``warm_newest_notifications``): without it, the run that follows
    waits on the writing back of gigabytes of pages at its first checkpoint."""
    from django.db import connection

    batch = max(1, batch_rows // max(per_user, 1))
    done = 0
    with connection.cursor() as cursor:
        for start in range(0, len(user_ids), batch):
            chunk = user_ids[start : start + batch]
            cursor.execute(
                """
                INSERT INTO notifications_notification
                    (recipient_id, title, body, url, level, created_at, read_at)
                SELECT u,
                       'History ' || g,
                       'An older notification, still unread.',
                       '/notifications/',
                       'info',
                       now() - interval '1 day' - g * interval '1 second',
                       NULL
                FROM unnest(%s::bigint[]) AS u, generate_series(1, %s) AS g
                """,
                [chunk, per_user],
            )
            done += len(chunk) * per_user
            if progress is not None:
                progress(done)
    if settle:
        settle_table("notifications_notification")
        warm_newest_notifications(user_ids)
    else:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE notifications_notification")


def warm_newest_notifications(user_ids: list[int]) -> None:
    """Read every user's newest notification through ``(recipient, id)``: the index leaves
    the next inserts go to are in PostgreSQL's cache, as a live site's are (the load went
    through a small ring of buffers and left them cold)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT count(newest) FROM unnest(%s::bigint[]) AS u,
            LATERAL (SELECT id AS newest FROM notifications_notification
                     WHERE recipient_id = u ORDER BY id DESC LIMIT 1) AS n
            """,
            [list(user_ids)],
        )


def settle_table(table: str) -> None:
    """Analyse ``table`` and checkpoint: its statistics fresh and the load's pages written
    out, so the gigabyte of dirty pages a bulk load leaves in the kernel is not flushed by
    a checkpoint in the middle of a measurement, making commits wait (docs/benchmarks.md,
    "the stall after the history").

    Not vacuumed: a vacuum of the new history records every page's few spare bytes in the
    free space map, and the next 100,000 inserts then go one to an old page each (a read,
    a dirtied page and a full-page image each) instead of to the end of the table, which
    a live site's table, vacuumed as it grew, does not do all at once."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {connection.ops.quote_name(table)}")
        cursor.execute("CHECKPOINT")


def insert_room_history(room_id: int, author_ids: list[int], count: int) -> None:
    """Give a room ``count`` older messages by ``author_ids`` in turn, in one INSERT."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO chat_message (room_id, author_id, body, client_id, created_at)
            SELECT %s,
                   (%s::bigint[])[1 + g %% cardinality(%s::bigint[])],
                   'An older message, number ' || g || ', of a realistic length.',
                   gen_random_uuid(),
                   now() - interval '1 day' + g * interval '1 millisecond'
            FROM generate_series(1, %s) AS g
            """,
            [room_id, author_ids, author_ids, count],
        )
        cursor.execute("ANALYZE chat_message")


def server_connections(database: str) -> dict[str, int]:
    """PostgreSQL connections to ``database`` other than the harness' and publishers', by state."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT coalesce(state, 'unknown'), count(*) FROM pg_stat_activity
            WHERE datname = %s AND application_name NOT LIKE 'bench-%%'
              AND backend_type = 'client backend'
            GROUP BY 1
            """,
            [database],
        )
        return dict(cursor.fetchall())


def versions() -> dict[str, str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        return {"postgresql": cursor.fetchone()[0]}
