"""The jobs' tasks, on Django's task framework (DEP 14).

Written against the framework's API only (``@task``, ``enqueue``): on Django 6 it is
``django.tasks``, before that the ``django-tasks`` backport. Which backend runs them (the
database backend's ``db_worker`` here) is the ``TASKS`` setting.
"""

import gzip
import logging
import tempfile
from contextlib import aclosing

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.files import File

from jobs import services
from jobs.services import JobCancelled
from notifications import exports as notification_exports

try:  # Django 6
    from django.tasks import task
except ImportError:  # Django 5.2: the backport
    from django_tasks import task

logger = logging.getLogger(__name__)


@task
async def notifications_export(job_id: int) -> None:
    """Write the job owner's notifications to a gzip-compressed NDJSON file.

    Rows stream from the ORM in chunks into a temporary file (memory stays flat); only a
    complete file goes to storage, so a cancelled or failed export leaves nothing behind.
    """
    progress = await sync_to_async(services.job_begin)(job_id)
    if progress is None:
        return  # cancelled before it started
    owner_id = progress.job.owner_id
    try:
        with progress.kept_alive():
            await _write_export(progress, owner_id)
    except JobCancelled:
        await sync_to_async(progress.cancelled)()
    except Exception:
        logger.exception("job %s failed", job_id)
        await sync_to_async(progress.fail)("The export failed on our side. Try again later.")
        raise


async def _write_export(progress, owner_id: int) -> None:
    """Stream the rows into a temporary gzip file, counting progress; store it whole."""
    await sync_to_async(progress.set_total)(
        await sync_to_async(notification_exports.export_size)(owner_id)
    )
    with tempfile.TemporaryFile(prefix="streamsite-export-") as spool:
        with gzip.GzipFile(fileobj=spool, mode="wb") as compressed:
            lines = notification_exports.export_lines(
                owner_id, rows_per_chunk=settings.JOB_EXPORT_CHUNK_ROWS
            )
            async with aclosing(lines):
                async for chunk in lines:
                    compressed.write(chunk)
                    await sync_to_async(progress.advance)(chunk.count(b"\n"))
        spool.seek(0)
        await sync_to_async(progress.succeed)("notifications.ndjson.gz", File(spool))
