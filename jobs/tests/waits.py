"""Waits on the database for what a worker process does: a condition polled to a deadline."""

import time

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from jobs.models import Job


@sync_to_async
def latest_job(user) -> Job:
    close_old_connections()
    return Job.objects.filter(owner=user).latest("id")


@sync_to_async
def wait_job(job_id: int, predicate, seconds: float = 20) -> Job:
    """Wait until the job's row satisfies ``predicate`` (read every 10 ms)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        close_old_connections()
        job = Job.objects.get(pk=job_id)
        if predicate(job):
            return job
        time.sleep(0.01)
    raise AssertionError(f"job {job_id} did not get there within {seconds}s: {job.__dict__}")


@sync_to_async
def wait_task_finished(job_id: int, seconds: float = 20) -> None:
    """Wait until the worker has finished the job's task (its result row says so)."""
    from django_tasks_db.models import DBTaskResult

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        close_old_connections()
        result = DBTaskResult.objects.filter(args_kwargs__args=[job_id]).first()
        if result is not None and result.finished_at is not None:
            return
        time.sleep(0.05)
    raise AssertionError(f"the task of job {job_id} did not finish within {seconds}s")
