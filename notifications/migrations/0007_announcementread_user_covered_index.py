"""Drop the announcement read's user index: the unique (user, notification) starts with it."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from streamsite.migration_operations import drop_covered_index


class Migration(migrations.Migration):
    atomic = False  # the index is dropped concurrently on PostgreSQL

    dependencies = [
        ("notifications", "0006_recipient_covered_by_feed_index"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        drop_covered_index(
            "notifications",
            "announcementread",
            "user",
            models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
            "notifications_announcementread_user_id_e7759c99",
        ),
    ]
