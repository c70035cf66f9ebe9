from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


def result_path(job: "Job", filename: str) -> str:
    """Where a job's result goes in storage: per owner, named after the job."""
    return f"jobs/{job.owner_id}/{job.pk}-{filename}"


class Job(models.Model):
    """One piece of user-visible background work: what it is, how far it got, its result.

    Written by the task that runs it (``jobs.services.JobProgress``) and by the user's
    cancel. ``seq`` grows with every write, so a stream can tell a newer state from an
    older one whatever order they arrive in.
    """

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE_STATES = (State.QUEUED, State.RUNNING)

    class Kind(models.TextChoices):
        NOTIFICATIONS_EXPORT = "notifications_export", "Export of my notifications"
        ROOM_EXPORT = "room_export", "Export of a room's history"

    # No index of its own: ``job_owner_id`` (owner, id) starts with it.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    kind = models.CharField(max_length=40, choices=Kind.choices)
    # What the job is about, for people ("#lobby"): plain text, never markup.
    label = models.CharField(max_length=200, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    done = models.BigIntegerField(default=0)
    total = models.BigIntegerField(null=True, blank=True)
    seq = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Renewed by the worker running the job (``JobProgress.kept_alive``): a running job
    # whose mark is older than ``JOB_STALE_SECONDS`` lost its worker (``jobs_fail_stale``).
    alive_at = models.DateTimeField(null=True, blank=True)
    result = models.FileField(upload_to=result_path, blank=True, max_length=300)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["owner", "id"], name="job_owner_id"),
            # The expiry sweep: finished jobs by age.
            models.Index(fields=["finished_at"], name="job_finished_at"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(done__gte=0), name="job_done_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.title} #{self.pk} ({self.state})"

    @property
    def title(self) -> str:
        """What people see it as: its kind, and what it is about if it says."""
        kind = self.get_kind_display()
        return f"{kind}: {self.label}" if self.label else kind

    @property
    def is_active(self) -> bool:
        return self.state in self.ACTIVE_STATES
