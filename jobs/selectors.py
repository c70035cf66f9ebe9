"""Reads of jobs: a user's list, one job of theirs, the stream's snapshot."""

from datetime import timedelta

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from jobs.events import job_event
from jobs.models import Job

#: Jobs a list page shows.
JOBS_LISTED = 50
#: Finished jobs the stream's snapshot includes: those finished this recently.
RECENT_FINISHED = timedelta(hours=1)
#: At most this many jobs in the stream's snapshot.
SNAPSHOT_JOBS = 20


def jobs_of(user_id: int) -> QuerySet[Job]:
    """The user's jobs, newest first."""
    return Job.objects.filter(owner_id=user_id).order_by("-id")


def running_jobs_of(user_id: int, limit: int) -> list[Job]:
    """The user's queued and running jobs, newest first, at most ``limit`` (the home page)."""
    return list(jobs_of(user_id).filter(state__in=Job.ACTIVE_STATES)[:limit])


def job_of(user_id: int, job_id: int) -> Job | None:
    """The user's job ``job_id``, or None (someone else's jobs do not exist for them)."""
    return Job.objects.filter(owner_id=user_id, pk=job_id).first()


def stream_snapshot(user_id: int) -> list[dict]:
    """The ``job`` events of the user's running and recently finished jobs, oldest first.

    Registered with ``notifications.extras``: a stream sends it on (re)connect.
    """
    recent = timezone.now() - RECENT_FINISHED
    jobs = (
        jobs_of(user_id)
        .filter(Q(state__in=Job.ACTIVE_STATES) | Q(finished_at__gte=recent))
        .order_by("-id")[:SNAPSHOT_JOBS]
    )
    return [job_event(job) for job in reversed(list(jobs))]


def job_expired_before():
    """Finished jobs older than this have their file deleted (``JOB_RESULT_TTL_HOURS``)."""
    return timezone.now() - timedelta(hours=settings.JOB_RESULT_TTL_HOURS)
