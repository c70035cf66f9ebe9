"""Drop the membership's room index: the unique (room, user) starts with it."""

import django.db.models.deletion
from django.db import migrations, models

from streamsite.migration_operations import drop_covered_index


class Migration(migrations.Migration):
    atomic = False  # the index is dropped concurrently on PostgreSQL

    dependencies = [
        ("chat", "0002_room_assistant"),
    ]

    operations = [
        drop_covered_index(
            "chat",
            "membership",
            "room",
            models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="memberships",
                to="chat.room",
            ),
            "chat_membership_room_id_15d30f85",
        ),
    ]
