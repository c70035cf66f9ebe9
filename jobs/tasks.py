"""The jobs' tasks, on Django's task framework (DEP 14).

Written against the framework's API only (``@task``, ``enqueue``): on Django 6 it is
``django.tasks``, before that the ``django-tasks`` backport. Which backend runs them (the
database backend's ``db_worker`` here) is the ``TASKS`` setting.
"""

import gzip
import logging
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing, asynccontextmanager
from functools import partial

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files import File
from django.db import connections

from chat import exports as chat_exports
from chat import permissions
from chat import selectors as chat_selectors
from jobs import services
from jobs.services import JobCancelled
from notifications import exports as notification_exports

try:  # Django 6
    from django.tasks import task
except ImportError:  # Django 5.2: the backport
    from django_tasks import task

logger = logging.getLogger(__name__)


#: The formats an export can be written in, and their file names' ending.
FORMATS = {"ndjson": "ndjson", "csv": "csv"}


@task
async def notifications_export(job_id: int, export_format: str = "ndjson") -> None:
    """Write the job owner's notifications to a gzip-compressed NDJSON (or CSV) file."""
    progress = await sync_to_async(services.job_begin)(job_id)
    if progress is None:
        return  # cancelled before it started
    owner_id = progress.job.owner_id
    await _run_export(
        progress,
        bounds=partial(notification_exports.export_bounds, owner_id),
        lines=partial(notification_exports.export_lines, owner_id, as_csv=export_format == "csv"),
        filename=f"notifications.{FORMATS[export_format]}.gz",
    )


@task
async def room_export(job_id: int, room_id: int, export_format: str = "ndjson") -> None:
    """Write a room's history to a gzip-compressed NDJSON (or CSV) file, for a member of it.

    Permission is checked again here, when the job runs: the owner may have left the
    room (or lost their account) since they asked.
    """
    progress = await sync_to_async(services.job_begin)(job_id)
    if progress is None:
        return
    room = await sync_to_async(_room_exportable_by)(progress.job.owner_id, room_id)
    if room is None:
        await sync_to_async(progress.fail)("You can no longer export this room.")
        return
    await _run_export(
        progress,
        bounds=partial(chat_exports.export_bounds, room.pk),
        lines=partial(chat_exports.export_lines, room, as_csv=export_format == "csv"),
        filename=f"chat-{room.slug}.{FORMATS[export_format]}.gz",
    )


def _room_exportable_by(user_id: int, room_id: int):
    """The room, if it still exists and the user may still export it; else None."""
    room = chat_selectors.room_by_id(room_id)
    user = get_user_model().objects.filter(pk=user_id).first()
    if room is None or user is None or not permissions.can_export(user, room):
        return None
    return room


async def _run_export(progress, *, bounds, lines, filename: str) -> None:
    """Export ``lines(rows_per_chunk=..., up_to=...)`` into a stored file.

    ``bounds()`` says where the rows end now and how many there are: the file holds the
    rows as they were when the job began, so its count is its total.

    Rows stream from the ORM in chunks into a temporary gzip file (memory stays flat);
    only a complete file goes to storage, so a cancelled or failed export leaves nothing
    behind. A cancel is noticed at the next progress write and recorded with how far it
    got; any other error fails the job with a reason for its owner (and is logged).

    The job's writes go through a connection of their own (``_writer``), never the one
    whose cursor streams the rows: see there why.
    """
    async with _writer(progress.job.pk) as write:
        try:
            with progress.kept_alive():
                up_to, total = await sync_to_async(bounds)()
                await write(progress.set_total, total)
                with tempfile.TemporaryFile(prefix="streamsite-export-") as spool:
                    with gzip.GzipFile(fileobj=spool, mode="wb") as compressed:
                        chunks = lines(rows_per_chunk=settings.JOB_EXPORT_CHUNK_ROWS, up_to=up_to)
                        async with aclosing(chunks):
                            async for chunk in chunks:
                                compressed.write(chunk)
                                await write(progress.advance, chunk.rows)
                    spool.seek(0)
                    await write(progress.succeed, filename, File(spool))
        except JobCancelled:
            logger.info("job %s cancelled by its owner", progress.job.pk)
            await write(progress.cancelled)
        except Exception:
            logger.exception("job %s failed", progress.job.pk)
            await write(progress.fail, "The export failed on our side. Try again later.")
            raise
        finally:
            # Workers are what runs all the time: each clears out expired results as it goes.
            try:
                await write(services.jobs_expire)
            except Exception:
                logger.exception("deleting expired jobs failed")


@asynccontextmanager
async def _writer(job_id: int):
    """Yield ``write(function, *args)``: run ``function`` on a thread (so a database
    connection) of the job's own, closed at the end.

    The rows are read by a cursor left open between chunks. On SQLite an open cursor keeps
    its connection's read snapshot, and once another connection has committed (the
    owner's cancel, any new notification) that connection can no longer write: ``BEGIN
    IMMEDIATE`` fails at once with "database is locked" (SQLITE_BUSY_SNAPSHOT, which the
    busy timeout does not retry), and a cancel would fail the job instead of stopping it.
    A connection that only writes waits its turn for the lock like any other writer.
    """
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"job-{job_id}-writes")

    async def write(function, *args):
        return await sync_to_async(function, thread_sensitive=False, executor=executor)(*args)

    try:
        yield write
    finally:
        await write(connections.close_all)
        executor.shutdown()
