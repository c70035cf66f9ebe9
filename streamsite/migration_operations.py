"""Migration operations the apps share.

``drop_covered_index``: a foreign key's own index, dropped when a wider index or unique
constraint starts with the same column (``(recipient, id)`` beside ``recipient``). Each
index is one more write per inserted row, and a covered one serves no lookup the wider
one does not (``streamsite/tests/test_indexes.py`` keeps it so).

Why not the ``AlterField(db_index=False)`` that ``makemigrations`` writes: on PostgreSQL
it also drops and re-adds the foreign key, and re-adding one checks every row under a
lock that blocks writes (minutes on a table of millions). This drops only the index,
``CONCURRENTLY`` on PostgreSQL (no lock held against writes, hence outside a
transaction: the migration sets ``atomic = False``); the reverse creates it again.
Migrations keep importing this module: change what it does only by adding.
"""

from django.db import migrations


def drop_covered_index(app_label: str, model_name: str, field_name: str, field, index: str):
    """The operation that sets ``field`` (``db_index=False``) in the migration state and
    drops the index Django named ``index`` when it created the field (the same name on
    SQLite and PostgreSQL)."""

    def drop(apps, schema_editor):
        concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
        name = schema_editor.quote_name(index)
        schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {name}")

    def create(apps, schema_editor):
        model = apps.get_model(app_label, model_name)
        table = schema_editor.quote_name(model._meta.db_table)
        column = schema_editor.quote_name(model._meta.get_field(field_name).column)
        name = schema_editor.quote_name(index)
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({column})")

    return migrations.SeparateDatabaseAndState(
        state_operations=[
            migrations.AlterField(model_name=model_name, name=field_name, field=field)
        ],
        database_operations=[migrations.RunPython(drop, create, elidable=False)],
    )
