"""A query built once answers as the queryset built for each value would (both backends)."""

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Count, F, JSONField, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce
from django.test.utils import CaptureQueriesContext

from chat.models import Membership, Message
from chat.tests.factories import add_messages, room_with
from streamsite.prebuilt_query import SENTINELS, PrebuiltQuery

pytestmark = pytest.mark.django_db


def rooms_and_counts(user_id: int):
    """The user's rooms with a correlated subquery and the user's id in two places."""
    return (
        Membership.objects.filter(user_id=user_id)
        .annotate(
            slug=F("room__slug"),
            others=Coalesce(
                Subquery(
                    Message.objects.filter(room_id=OuterRef("room_id"))
                    .exclude(author_id=user_id)
                    .values("room_id")
                    .annotate(n=Count("id"))
                    .values("n")[:1]
                ),
                Value(0),
            ),
        )
        .order_by("room_id")
        .values_list("room_id", "slug", "others")
    )


def test_the_prebuilt_rows_are_the_queryset_s_for_every_user(user, other_user):
    third = get_user_model().objects.create_user("third", password="pw-third-123")
    ops = room_with("ops", members=[user, other_user])
    dev = room_with("dev", members=[user, third])
    room_with("quiet", members=[other_user])
    add_messages(ops, other_user, 3)
    add_messages(ops, user, 2)
    add_messages(dev, third, 4)
    prebuilt = PrebuiltQuery(rooms_and_counts)
    for person in (user, other_user, third):
        assert prebuilt.rows(user_id=person.pk) == list(rooms_and_counts(person.pk))
    assert prebuilt.rows(user_id=user.pk) == [(ops.pk, "ops", 3), (dev.pk, "dev", 4)]
    assert prebuilt.rows(user_id=10**9) == []  # no such user: no rows


def test_the_queryset_is_built_once_and_each_call_is_one_query(user):
    room_with("ops", members=[user])
    built = []

    def build(user_id):
        built.append(user_id)
        return rooms_and_counts(user_id)

    prebuilt = PrebuiltQuery(build)
    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            prebuilt.rows(user_id=user.pk)
    assert built == [SENTINELS[0]]
    assert len(queries.captured_queries) == 3


def test_a_query_whose_shape_depends_on_the_value_is_refused():
    # The value picks the order: the SQL has no parameter for it, so it cannot be prebuilt.
    def shaped(user_id):
        return get_user_model().objects.order_by("id" if user_id > 0 else "-id").values_list("id")

    with pytest.raises(ValueError, match="does not take 'user_id'"):
        PrebuiltQuery(shaped).rows(user_id=1)


def test_columns_are_converted_as_the_queryset_s_are(user):
    def documents(user_id):  # JSON and a datetime: rows the backends' converters change
        return (
            get_user_model()
            .objects.filter(pk=user_id)
            .annotate(doc=Value({"a": [1, "b"]}, output_field=JSONField()))
            .values_list("doc", "date_joined")
        )

    rows = PrebuiltQuery(documents).rows(user_id=user.pk)
    assert rows == list(documents(user.pk)) == [({"a": [1, "b"]}, user.date_joined)]


def test_several_values_none_and_a_count(user, other_user):
    ops = room_with("ops", members=[user, other_user])
    ids = [message.pk for message in add_messages(ops, other_user, 5)]

    def between(room_id, after_id, up_to):  # the names sort apart from the order given
        return Message.objects.filter(room_id=room_id, id__gt=after_id, id__lte=up_to).values_list(
            "id"
        )

    prebuilt = PrebuiltQuery(between)
    assert prebuilt.rows(room_id=ops.pk, after_id=ids[0], up_to=ids[3]) == [
        (pk,) for pk in ids[1:4]
    ]
    assert prebuilt.rows(up_to=ids[1], after_id=0, room_id=ops.pk) == [(ids[0],), (ids[1],)]
    counted = PrebuiltQuery(between, count=True)
    for after, up_to in ((ids[0], ids[3]), (0, ids[4]), (ids[4], ids[4])):
        values = {"room_id": ops.pk, "after_id": after, "up_to": up_to}
        assert counted.count(**values) == between(**values).count()
    latest = PrebuiltQuery(lambda: Message.objects.order_by("-id").values_list("id")[:1])
    assert latest.rows() == [(ids[-1],)]


def test_a_call_must_name_the_values_the_query_was_built_with(user):
    prebuilt = PrebuiltQuery(rooms_and_counts)
    prebuilt.rows(user_id=user.pk)
    with pytest.raises(TypeError, match="expected the values"):
        prebuilt.rows(owner_id=user.pk)
    with pytest.raises(TypeError, match="not prebuilt as a count"):
        prebuilt.count(user_id=user.pk)
