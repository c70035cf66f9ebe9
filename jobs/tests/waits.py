"""Waits on the database for what a worker process does: a condition polled to a deadline."""

import asyncio
import signal
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


async def while_stopped(worker, action, *, blocked_seconds: float = 1):
    """Run ``action()`` with the worker process stopped (SIGSTOP): the job cannot finish
    meanwhile. A worker stopped inside a progress write holds that write's lock, which the
    action (a cancel) may need: after ``blocked_seconds`` the worker is resumed, commits,
    and the action goes through before the job's next write."""
    worker.process.send_signal(signal.SIGSTOP)
    task = asyncio.ensure_future(action())
    try:
        await asyncio.wait({task}, timeout=blocked_seconds)
    finally:
        worker.process.send_signal(signal.SIGCONT)
    return await task
