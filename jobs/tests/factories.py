"""Jobs in given states, written through the services as a worker would write them."""

from django.core.files.base import ContentFile

from jobs import services
from jobs.models import Job


class NoTask:
    """Stands in for a task in tests that drive the job by hand: enqueues nothing."""

    @staticmethod
    def enqueue(job_id: int) -> None:
        return None


def queued_job(owner, *, task=NoTask) -> Job:
    """A queued export; with a real ``task`` it is enqueued for the workers on commit."""
    return services.job_start(owner=owner, kind=Job.Kind.NOTIFICATIONS_EXPORT, task=task)


def running_job(owner, *, total: int = 100) -> services.JobProgress:
    progress = services.job_begin(queued_job(owner).pk)
    progress.set_total(total)
    return progress


def succeeded_job(owner, content: bytes = b"line\n") -> Job:
    progress = running_job(owner, total=1)
    progress.advance(1)
    return progress.succeed("notifications.ndjson.gz", ContentFile(content))
