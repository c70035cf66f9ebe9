"""Drop the recipient foreign key's own index: ``notification_recipient_id`` (recipient,
id) serves every lookup by recipient, and each index is one more random write per row of
a broadcast into a long history (docs/benchmarks.md, publish cost).

Only the index goes. ``AlterField`` would also drop and re-add the foreign key, and
re-adding it checks every row under a lock that blocks writes: minutes on a table of
millions. On PostgreSQL the index is dropped concurrently (no lock held against writes),
which cannot run in a transaction.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

#: The name Django gave the index when the field was created (both backends).
INDEX = "notifications_notification_recipient_id_d055f3f0"


def drop_index(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {schema_editor.quote_name(INDEX)}")


def create_index(apps, schema_editor):
    table = apps.get_model("notifications", "Notification")._meta.db_table
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {schema_editor.quote_name(INDEX)} "
        f"ON {schema_editor.quote_name(table)} ({schema_editor.quote_name('recipient_id')})"
    )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("notifications", "0005_drop_unread_index"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="notification",
                    name="recipient",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        help_text="Leave empty to announce it to every user (stored once).",
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="notifications",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(drop_index, create_index)],
        ),
    ]
