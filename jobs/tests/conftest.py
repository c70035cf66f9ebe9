"""Fixtures of the jobs tests: a media directory of the test's own, a real task worker."""

from __future__ import annotations

import pytest


@pytest.fixture
def media_root(tmp_path, settings):
    """A fresh ``MEDIA_ROOT`` for this test (the worker process is given the same)."""
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = root
    return root


@pytest.fixture
def task_worker_factory(transactional_db, media_root):
    """Start real ``manage.py db_worker`` processes on the test database; stopped after.

    Exports write a progress count every 10 rows, so that thousands of rows make
    thousands of progress counts to coalesce. ``extra_env`` adds settings.
    """
    from streamsite.testing.worker import TaskWorker

    started = []

    def start(**extra_env: str) -> TaskWorker:
        env = {"MEDIA_ROOT": str(media_root), "JOB_EXPORT_CHUNK_ROWS": "10", **extra_env}
        worker = TaskWorker(extra_env=env).start()
        started.append(worker)
        worker.wait_started()
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def task_worker(task_worker_factory):
    """One real worker process with the default settings."""
    return task_worker_factory()


@pytest.fixture
def make_notifications(db):
    """``make_notifications(user, n)``: store ``n`` notifications for ``user`` at once."""
    from notifications import services
    from notifications.models import Notification

    def make(user, count: int) -> None:
        Notification.objects.bulk_create(
            Notification(recipient=user, title=f"note {i}", body="x" * 40) for i in range(count)
        )
        services.unread_counters_rebuild(user_ids=[user.pk])

    return make
