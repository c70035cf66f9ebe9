"""Unread counts capped at 100 ("99+"), and the live count a notification stream keeps
(chat/unread_watch.py), one message at a time."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat import selectors
from chat.events import message_deleted_event, message_event, room_key
from chat.models import Membership
from chat.selectors import UNREAD_CAP
from chat.tests.factories import add_messages, room_with
from chat.unread_watch import ChatUnreadWatch

pytestmark = pytest.mark.django_db


def read_up_to(user, room, message) -> None:
    Membership.objects.filter(user=user, room=room).update(last_read_message_id=message.pk)


# unread_total --------------------------------------------------------------------------------


def test_unread_total_stops_at_the_cap_in_one_limited_query(user, other_user):
    """Regression: the header's count visited every unread message of every room on every
    page; 150 unread now count as 100 ("99+"), read by one query under LIMIT 100."""
    ops = room_with("ops", members=[user, other_user])
    dev = room_with("dev", members=[user, other_user])
    add_messages(ops, other_user, 90)
    add_messages(dev, other_user, 60)
    with CaptureQueriesContext(connection) as queries:
        assert selectors.unread_total(user) == UNREAD_CAP
    assert len(queries.captured_queries) == 1
    assert f"LIMIT {UNREAD_CAP}" in queries.captured_queries[0]["sql"]
    assert selectors.unread_label(selectors.unread_total(user)) == "99+"
    assert selectors.unread_label(99) == "99"
    assert selectors.unread_label(None) == "0"


def test_unread_total_never_visits_messages_read_long_ago(user, other_user):
    """A room of 20,000 messages read long ago and 150 new ones: the query's work is 100.

    On PostgreSQL the plan is checked with EXPLAIN ANALYZE: no node of it looks at more
    rows (kept or filtered out) than the cap, whatever the history."""
    ops = room_with("ops", members=[user, other_user])
    old = add_messages(ops, other_user, 20_000)
    read_up_to(user, ops, old[-1])
    add_messages(ops, other_user, UNREAD_CAP + 50)
    assert selectors.unread_total(user) == UNREAD_CAP
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE chat_message")
        cursor.execute("ANALYZE chat_membership")
    queryset = selectors.unread_total_query(user)
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        # Django's SQL, its parameters apart: nothing here comes from a user.
        explain = f"EXPLAIN (ANALYZE, FORMAT JSON) SELECT COUNT(*) FROM ({sql}) q"  # noqa: S608
        cursor.execute(explain, params)
        plan = cursor.fetchone()[0]
        plan = plan[0]["Plan"] if isinstance(plan, list) else plan

    def most_rows(node) -> int:
        looked_at = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
        rows = looked_at * node.get("Actual Loops", 1)
        return max([rows] + [most_rows(child) for child in node.get("Plans", [])])

    assert most_rows(plan) <= UNREAD_CAP, plan


# unread_by_room and rooms_for ------------------------------------------------------------------


def test_unread_by_room_counts_each_room_up_to_the_cap_in_one_query(user, other_user):
    ops = room_with("ops", members=[user, other_user])
    dev = room_with("dev", members=[user, other_user])
    room_with("quiet", members=[user])
    room_with("lobby")  # not a member: not listed
    read = add_messages(ops, other_user, 3)
    read_up_to(user, ops, read[-1])
    add_messages(ops, other_user, 2)
    add_messages(ops, user, 4)  # their own
    add_messages(ops, other_user, 1, body="", deleted_at=timezone.now())
    latest_dev = add_messages(dev, other_user, UNREAD_CAP + 20)[-1]
    with CaptureQueriesContext(connection) as queries:
        rows = selectors.unread_by_room(user.pk)
    assert len(queries.captured_queries) == 1
    by_slug = {slug: (unread, latest) for _id, slug, unread, latest in rows}
    assert by_slug["ops"][0] == 2
    assert by_slug["dev"] == (UNREAD_CAP, latest_dev.pk)
    assert by_slug["quiet"] == (0, 0)
    assert set(by_slug) == {"ops", "dev", "quiet"}
    assert {room.slug: room.unread for room in selectors.rooms_for(user)}["dev"] == UNREAD_CAP


# ChatUnreadWatch -----------------------------------------------------------------------------


def loaded_watch(user) -> ChatUnreadWatch:
    watch = ChatUnreadWatch(user.pk)
    keys = watch.replace(watch.read())
    watch.stale = False
    watch.keys = keys
    return watch


def new_message(room, author, message_id: int) -> dict:
    payload = {"id": message_id, "room": room.slug, "author": {"id": author.pk}}
    return message_event(payload)


def test_the_watch_counts_others_messages_locally_and_clears_on_the_users_own(user, other_user):
    ops = room_with("ops", members=[user, other_user])
    last = add_messages(ops, other_user, 2)[-1]
    watch = loaded_watch(user)
    assert watch.keys == {room_key(ops.pk)}
    assert watch.payload() == {"total": 2, "rooms": {"ops": 2}, "cap": UNREAD_CAP}

    assert watch.take(new_message(ops, other_user, last.pk + 1))
    assert not watch.take(new_message(ops, other_user, last.pk + 1))  # sent again: skipped
    assert not watch.take(new_message(ops, other_user, last.pk))  # counted by the read
    assert watch.payload()["rooms"] == {"ops": 3}
    assert watch.take(new_message(ops, user, last.pk + 2))  # posting reads the room
    assert watch.payload() == {"total": 0, "rooms": {}, "cap": UNREAD_CAP}
    assert not watch.stale


def test_the_watch_stops_at_the_cap_and_reads_again_for_what_events_do_not_say(user, other_user):
    ops = room_with("ops", members=[user, other_user])
    last = add_messages(ops, other_user, UNREAD_CAP)[-1]
    watch = loaded_watch(user)
    assert not watch.take(new_message(ops, other_user, last.pk + 1))
    assert watch.payload()["total"] == UNREAD_CAP
    assert not watch.take({"kind": "typing", "user": "bob", "user_id": other_user.pk})
    assert not watch.stale
    watch.take(message_deleted_event(last.pk))
    assert watch.stale


def test_the_watch_reads_again_when_it_is_removed_or_meets_an_unknown_room(user, other_user):
    ops = room_with("ops", members=[user, other_user])
    watch = loaded_watch(user)
    watch.take({"kind": "member.removed", "user_id": other_user.pk})
    assert not watch.stale
    watch.take({"kind": "member.removed", "user_id": user.pk})
    assert watch.stale
    watch.stale = False
    elsewhere = room_with("elsewhere", members=[user])
    watch.take(new_message(elsewhere, other_user, 10**9))
    assert watch.stale
    assert ops.pk != elsewhere.pk
