"""The notifications table's shape: what a broadcast into a long history pays for."""

from django.db import connection

from notifications.models import Notification


def index_columns(table: str) -> list[tuple[str, list[str]]]:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    return [
        (name, info["columns"])
        for name, info in constraints.items()
        if info["index"] or info["unique"] or info["primary_key"]
    ]


def test_no_notification_index_is_covered_by_a_wider_one(db):
    """Every index is one more random write per row of a broadcast: one that a wider
    index already starts with (the recipient foreign key's own, beside (recipient, id))
    costs that write and serves nothing the wider one does not."""
    indexes = index_columns(Notification._meta.db_table)
    assert ["recipient_id", "id"] in [columns for _, columns in indexes]
    covered = [
        (name, columns, wider)
        for name, columns in indexes
        for other, wider in indexes
        if other != name and len(columns) < len(wider) and wider[: len(columns)] == columns
    ]
    assert covered == []
