"""Drop the job's owner index: ``job_owner_id`` (owner, id) starts with it."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from streamsite.migration_operations import drop_covered_index


class Migration(migrations.Migration):
    atomic = False  # the index is dropped concurrently on PostgreSQL

    dependencies = [
        ("jobs", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        drop_covered_index(
            "jobs",
            "job",
            "owner",
            models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
            "jobs_job_owner_id_4c884775",
        ),
    ]
