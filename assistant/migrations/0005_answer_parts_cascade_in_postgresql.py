"""PostgreSQL deletes an answer's parts itself, also those a flush commits during the delete.

Django's collector deletes an answer's parts, then the answer. A flush that commits a part
in between (the delete waits for the flush's row lock on the answer) left that part
referencing a deleted answer: the deleting transaction (a user or a conversation being
deleted mid-answer) failed at its commit on the deferred foreign key check. With ``ON DELETE
CASCADE`` the answer's deletion takes every part, whenever it committed. SQLite needs
nothing: its writers run one at a time.
"""

from django.db import migrations

TABLE = "assistant_answerpart"


def constraint_name(schema_editor) -> str:
    with schema_editor.connection.cursor() as cursor:
        constraints = schema_editor.connection.introspection.get_constraints(cursor, TABLE)
    [name] = [
        name
        for name, info in constraints.items()
        if info["foreign_key"] and info["columns"] == ["answer_id"]
    ]
    return name


def cascade(apps, schema_editor, on_delete="CASCADE"):
    if schema_editor.connection.vendor != "postgresql":
        return
    name = schema_editor.quote_name(constraint_name(schema_editor))
    schema_editor.execute(
        f"ALTER TABLE {TABLE} DROP CONSTRAINT {name}, ADD CONSTRAINT {name} FOREIGN KEY "
        f"(answer_id) REFERENCES assistant_answer (id) ON DELETE {on_delete} "
        "DEFERRABLE INITIALLY DEFERRED"
    )


def no_cascade(apps, schema_editor):
    cascade(apps, schema_editor, on_delete="NO ACTION")


class Migration(migrations.Migration):
    dependencies = [("assistant", "0004_answer_parts_and_asking_message")]

    operations = [migrations.RunPython(cascade, no_cascade)]
