"""Drop the question's conversation index: the unique (conversation, client_id) starts with it."""

import django.db.models.deletion
from django.db import migrations, models

from streamsite.migration_operations import drop_covered_index


class Migration(migrations.Migration):
    atomic = False  # the index is dropped concurrently on PostgreSQL

    dependencies = [
        ("assistant", "0005_answer_parts_cascade_in_postgresql"),
    ]

    operations = [
        drop_covered_index(
            "assistant",
            "question",
            "conversation",
            models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="questions",
                to="assistant.conversation",
            ),
            "assistant_question_conversation_id_9bf10776",
        ),
    ]
