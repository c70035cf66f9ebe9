"""Drop the recipient foreign key's own index: ``notification_recipient_id`` (recipient,
id) serves every lookup by recipient, and each index is one more random write per row of
a broadcast into a long history (docs/benchmarks.md, publish cost)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from streamsite.migration_operations import drop_covered_index


class Migration(migrations.Migration):
    atomic = False  # the index is dropped concurrently on PostgreSQL

    dependencies = [
        ("notifications", "0005_drop_unread_index"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        drop_covered_index(
            "notifications",
            "notification",
            "recipient",
            models.ForeignKey(
                blank=True,
                db_index=False,
                help_text="Leave empty to announce it to every user (stored once).",
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="notifications",
                to=settings.AUTH_USER_MODEL,
            ),
            "notifications_notification_recipient_id_d055f3f0",
        ),
    ]
