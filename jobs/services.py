"""Writes of jobs: start, progress, finish, cancel; each publishes the job after commit.

A job's state is written by two parties: the task running it (``JobProgress``) and its
owner (``job_cancel``). Every write is a conditional update on the state it expects, so
the two cannot overwrite each other: a cancelled job's next progress write matches no row,
and the task stops there. Every write also bumps ``seq`` and publishes the job to its
owner's notification stream (``event: job``) once committed.
"""

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.core.files import File
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from jobs import selectors
from jobs.events import job_event, job_result_url
from jobs.models import Job
from notifications import services as notifications

logger = logging.getLogger(__name__)


class JobCancelled(Exception):
    """The job is no longer running (its owner cancelled it): stop the work."""


def _published(job: Job) -> Job:
    notifications.stream_extra_publish(user_id=job.owner_id, event=job_event(job))
    return job


def job_start(*, owner, kind: str, task, label: str = "", **arguments) -> Job:
    """Store a queued job and enqueue ``task(job_id, **arguments)`` once it is committed.

    ``task`` is a task of the framework (``@task``); it calls ``job_begin`` with the id.
    The enqueue waits for the commit so that no backend's worker can look for a job that
    is not there yet. If the enqueue fails, the job fails with it and its owner is told.
    """
    with transaction.atomic():
        job = Job.objects.create(owner=owner, kind=kind, label=label[:200], seq=1)
        _published(job)

        def enqueue() -> None:
            try:
                task.enqueue(job.pk, **arguments)
            except Exception:
                logger.exception("job %s could not be queued", job.pk)
                job_fail(job_id=job.pk, error="The job could not be queued. Try again later.")

        transaction.on_commit(enqueue)
    return job


def job_begin(job_id: int, *, total: int | None = None) -> "JobProgress | None":
    """Mark a queued job running; its ``JobProgress``, or None if it was cancelled or gone.

    The update only matches a queued job, so a job runs at most once even if its task
    were delivered twice.
    """
    now = timezone.now()
    with transaction.atomic():
        started = Job.objects.filter(pk=job_id, state=Job.State.QUEUED).update(
            state=Job.State.RUNNING, started_at=now, alive_at=now, total=total, seq=F("seq") + 1
        )
        if not started:
            return None
        job = Job.objects.get(pk=job_id)
        _published(job)
    return JobProgress(job)


class JobProgress:
    """The running task's handle on its job: count units done, finish, fail.

    ``advance`` counts in memory and writes (then publishes) at most once every
    ``JOB_PROGRESS_SECONDS`` (a quarter of a second: at most 4 events a second per job,
    the latest count each time). Each write checks that the job still runs: if its owner
    cancelled it, ``advance`` raises ``JobCancelled`` between two units of work.
    """

    def __init__(self, job: Job) -> None:
        self.job = job
        self.done = job.done
        self._written_at = time.monotonic()

    def set_total(self, total: int) -> None:
        """Say how many units there are, once known (written with the next progress)."""
        self.job.total = total
        self.flush()

    def advance(self, units: int = 1) -> None:
        """Count ``units`` more done; write if the last write is old enough."""
        self.done += units
        if time.monotonic() - self._written_at >= settings.JOB_PROGRESS_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write (and publish) the count now; raises ``JobCancelled`` if the job stopped."""
        with transaction.atomic():
            changed = Job.objects.filter(pk=self.job.pk, state=Job.State.RUNNING).update(
                done=self.done, total=self.job.total, alive_at=timezone.now(), seq=F("seq") + 1
            )
            if not changed:
                raise JobCancelled
            self.job.refresh_from_db(fields=["done", "total", "seq", "state"])
            _published(self.job)
        self._written_at = time.monotonic()

    @contextmanager
    def kept_alive(self) -> Iterator[None]:
        """Renew the job's liveness mark from a thread while the block runs.

        Progress writes renew it too, but a unit of work may take longer than
        ``JOB_STALE_SECONDS`` (one slow query): without this the job would be taken for
        one whose worker died.
        """
        stop = threading.Event()
        interval = settings.JOB_STALE_SECONDS / 3

        def renew() -> None:
            try:
                while not stop.wait(interval):
                    Job.objects.filter(pk=self.job.pk, state=Job.State.RUNNING).update(
                        alive_at=timezone.now()
                    )
            except Exception:
                logger.exception("job %s: renewing its liveness mark failed", self.job.pk)
            finally:
                connection.close()  # this thread's own connection

        thread = threading.Thread(target=renew, name=f"job-{self.job.pk}-alive", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def cancelled(self) -> Job:
        """Record how far a cancelled job got (its owner's cancel set its state)."""
        with transaction.atomic():
            Job.objects.filter(pk=self.job.pk, state=Job.State.CANCELLED).update(
                done=self.done, seq=F("seq") + 1
            )
            self.job.refresh_from_db()
            _published(self.job)
        return self.job

    def succeed(self, filename: str, content: File) -> Job:
        """Store the result file and finish the job; its owner is notified with the link.

        If the owner cancelled at the last moment, the file is deleted again and the job
        stays cancelled: a cancelled job leaves no file behind.
        """
        job = self.job
        job.result.save(filename, content, save=False)
        with transaction.atomic():
            finished = Job.objects.filter(pk=job.pk, state=Job.State.RUNNING).update(
                state=Job.State.SUCCEEDED,
                done=self.done,
                result=job.result.name,
                finished_at=timezone.now(),
                seq=F("seq") + 1,
            )
            if finished:
                job.refresh_from_db()
                _published(job)
                notifications.notification_create(
                    recipient=job.owner,
                    title="Your export is ready",
                    body=f"{job.title}: {job.done} rows.",
                    url=job_result_url(job),
                    level="success",
                )
        if not finished:
            job.result.delete(save=False)
            raise JobCancelled
        return job

    def fail(self, error: str) -> Job | None:
        """Finish the job as failed with ``error`` (shown to its owner, so no internals)."""
        return job_fail(job_id=self.job.pk, error=error, done=self.done)


def job_fail(*, job_id: int, error: str, done: int | None = None, alive_before=None) -> Job | None:
    """Mark an unfinished job failed and tell its owner why; None if it had finished
    (or, with ``alive_before``, if its worker renewed it since)."""
    fields = {
        "state": Job.State.FAILED,
        "error": error[:1000],
        "finished_at": timezone.now(),
        "seq": F("seq") + 1,
    }
    if done is not None:
        fields["done"] = done
    with transaction.atomic():
        found = Job.objects.filter(pk=job_id, state__in=Job.ACTIVE_STATES)
        if alive_before is not None:
            found = found.filter(alive_at__lt=alive_before)
        failed = found.update(**fields)
        if not failed:
            return None
        job = Job.objects.select_related("owner").get(pk=job_id)
        _published(job)
        notifications.notification_create(
            recipient=job.owner,
            title=f"{job.title} failed"[:200],
            body=job.error,
            url="/jobs/",
            level="error",
        )
    return job


def job_cancel(*, user, job_id: int) -> Job | None:
    """Cancel the user's queued or running job; None if it is not theirs or has finished.

    A queued job never starts; a running one stops before its next progress write (its
    task then records how far it got and deletes its partial file).
    """
    with transaction.atomic():
        cancelled = Job.objects.filter(
            pk=job_id, owner_id=user.pk, state__in=Job.ACTIVE_STATES
        ).update(state=Job.State.CANCELLED, finished_at=timezone.now(), seq=F("seq") + 1)
        if not cancelled:
            return None
        return _published(Job.objects.get(pk=job_id))


#: What the owner of a job whose worker died is told.
WORKER_LOST = "The worker running this job stopped before it finished. Start it again."


def jobs_fail_stale(*, owner_id: int | None = None) -> int:
    """Fail running jobs whose worker stopped renewing them (``JOB_STALE_SECONDS``).

    A worker killed mid-job (``kill -9``, a lost machine) leaves its job ``running``; this
    marks it failed and tells its owner, so no bar runs forever. Run where jobs are
    looked at (the list page, a stream's snapshot); safe from many processes at once (each
    job changes only while still running and still stale). Returns how many failed.
    """
    bound = timezone.now() - timedelta(seconds=settings.JOB_STALE_SECONDS)
    stale = Job.objects.filter(state=Job.State.RUNNING, alive_at__lt=bound)
    if owner_id is not None:
        stale = stale.filter(owner_id=owner_id)
    failed = 0
    for job_id in stale.values_list("pk", flat=True):
        if job_fail(job_id=job_id, error=WORKER_LOST, alive_before=bound) is not None:
            failed += 1
    if failed:
        logger.warning("marked %d job(s) failed: their worker stopped", failed)
    return failed


def stream_snapshot(user_id: int) -> list[dict]:
    """Where the user's jobs stand, for their notification stream (on connect, and polled
    on the embedded backend): jobs whose worker died are failed first."""
    jobs_fail_stale(owner_id=user_id)
    return selectors.stream_snapshot(user_id)


def jobs_expire() -> int:
    """Delete finished jobs older than ``JOB_RESULT_TTL_HOURS``, their files first.

    Run by the worker after each job and by ``manage.py jobs_expire`` (for cron). The
    download view refuses an expired file already, whether or not this has run.
    """
    expired = 0
    for job in Job.objects.filter(finished_at__lt=selectors.job_expired_before()).order_by("pk"):
        if job.result:
            job.result.delete(save=False)  # a file already gone is not an error
        job.delete()
        expired += 1
    if expired:
        logger.info("deleted %d expired job(s) and their files", expired)
    return expired
