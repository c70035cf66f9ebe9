"""What the jobs app sends on a user's notification stream: ``event: job``.

``{id, kind, title, state, done, total, rate, eta_seconds, result_url, error, seq}``: ``rate`` in
units a second since the job started, ``eta_seconds`` from that rate (None until there is
one), ``result_url`` the owner's download link once it succeeded.
"""

from django.urls import reverse
from django.utils import timezone

from notifications.extras import extra_event

#: The SSE event name of job progress on the notification stream.
JOB_EVENT = "job"


def job_payload(job, *, now=None) -> dict:
    """The ``job`` event's data for ``job`` as stored (JSON-safe primitives)."""
    rate = eta = None
    if job.started_at is not None:
        end = job.finished_at or now or timezone.now()
        elapsed = (end - job.started_at).total_seconds()
        if elapsed > 0 and job.done:
            rate = round(job.done / elapsed, 1)
            if job.total is not None and job.is_active:
                eta = max(0, round((job.total - job.done) / (job.done / elapsed)))
    return {
        "id": job.pk,
        "kind": job.kind,
        "title": job.title,
        "state": job.state,
        "done": job.done,
        "total": job.total,
        "rate": rate,
        "eta_seconds": eta,
        "result_url": job_result_url(job),
        "error": job.error,
        "seq": job.seq,
    }


def job_result_url(job) -> str | None:
    """The owner's download link of a succeeded job's file, else None."""
    if job.state == job.State.SUCCEEDED and job.result:
        return reverse("jobs:download", args=[job.pk])
    return None


def job_event(job) -> dict:
    """``job`` as an extra event of its owner's notification stream."""
    return extra_event(JOB_EVENT, job.pk, job.seq, job_payload(job), active=job.is_active)
