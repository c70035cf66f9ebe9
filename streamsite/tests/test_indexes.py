"""The project's tables carry no index that a wider one already covers."""

import pytest
from django.apps import apps
from django.db import connection

from streamsite.migration_operations import drop_covered_index

PROJECT_APPS = ("notifications", "chat", "assistant", "jobs")


def index_columns(table: str) -> list[tuple[str, list[str]]]:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    return [
        (name, info["columns"])
        for name, info in constraints.items()
        if info["index"] or info["unique"] or info["primary_key"]
    ]


def covered(indexes: list[tuple[str, list[str]]]) -> list[tuple[str, list[str], list[str]]]:
    return [
        (name, columns, wider)
        for name, columns in indexes
        for other, wider in indexes
        if other != name and len(columns) < len(wider) and wider[: len(columns)] == columns
    ]


@pytest.mark.parametrize(
    "model",
    [m for label in PROJECT_APPS for m in apps.get_app_config(label).get_models()],
    ids=lambda m: m._meta.label,
)
def test_no_index_is_covered_by_a_wider_one(db, model):
    """Every index is one more write per inserted row: one that a wider index or unique
    constraint starts with (a foreign key's own, beside (recipient, id)) costs that write
    and serves no lookup the wider one does not."""
    assert covered(index_columns(model._meta.db_table)) == []


def test_the_check_finds_a_covered_index():
    indexes = [("fk", ["recipient_id"]), ("feed", ["recipient_id", "id"]), ("pk", ["id"])]
    assert covered(indexes) == [("fk", ["recipient_id"], ["recipient_id", "id"])]


def test_notifications_keep_the_feed_index_that_covers_the_recipient(db):
    notifications = apps.get_model("notifications", "Notification")._meta.db_table
    assert ["recipient_id", "id"] in [c for _, c in index_columns(notifications)]


def test_dropping_a_covered_index_can_be_undone(transactional_db):
    """The reverse of ``drop_covered_index`` creates the index again, with its name."""
    from django.db import migrations
    from django.db.migrations.state import ProjectState

    model = apps.get_model("jobs", "Job")
    table, index = model._meta.db_table, "jobs_job_owner_id_4c884775"
    operation = drop_covered_index("jobs", "job", "owner", model._meta.get_field("owner"), index)
    assert isinstance(operation, migrations.SeparateDatabaseAndState)
    state = ProjectState.from_apps(apps)
    (run_python,) = operation.database_operations
    with connection.schema_editor() as editor:
        run_python.database_backwards("jobs", editor, state, state)
    assert (index, ["owner_id"]) in index_columns(table)
    with connection.schema_editor(atomic=False) as editor:
        run_python.database_forwards("jobs", editor, state, state)
    assert index not in [name for name, _ in index_columns(table)]
