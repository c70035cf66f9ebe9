"""The jobs pages: server-rendered state, POSTs with CSRF, and nobody else's jobs (404)."""

import pytest
from django.test import Client
from django.urls import reverse

from chat.tests.factories import room_with
from jobs.models import Job
from jobs.tests.factories import queued_job, running_job, succeeded_job


@pytest.fixture
def other_client(other_user):
    client = Client()
    client.force_login(other_user)
    return client


def test_anonymous_is_sent_to_log_in(client, db):
    response = client.get(reverse("jobs:list"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_list_shows_each_job_as_it_stands_without_javascript(user_client, user, media_root):
    running = running_job(user, total=200)
    running.advance(50)
    running.flush()
    done = succeeded_job(user)
    html = user_client.get(reverse("jobs:list")).content.decode()
    assert f'id="job-{running.job.pk}"' in html
    assert 'value="50"' in html and 'max="200"' in html
    assert reverse("jobs:cancel", args=[running.job.pk]) in html
    assert reverse("jobs:download", args=[done.pk]) in html


def test_starting_an_export_queues_a_job_and_its_task(
    user_client, user, django_capture_on_commit_callbacks
):
    """The task is enqueued once the job is committed (the test runs the commit hooks)."""
    from django_tasks_db.models import DBTaskResult

    with django_capture_on_commit_callbacks(execute=True):
        response = user_client.post(reverse("jobs:notifications_export"))
    assert response.status_code == 302
    job = Job.objects.get(owner=user)
    assert job.state == Job.State.QUEUED
    assert DBTaskResult.objects.filter(args_kwargs__args=[job.pk]).exists()


def test_cancel_needs_csrf(user):
    job = queued_job(user)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(reverse("jobs:cancel", args=[job.pk])).status_code == 403
    job.refresh_from_db()
    assert job.state == Job.State.QUEUED


def test_cancel_is_a_post(user_client, user):
    job = queued_job(user)
    assert user_client.get(reverse("jobs:cancel", args=[job.pk])).status_code == 405


def test_owner_cancels_a_queued_job(user_client, user):
    job = queued_job(user)
    assert user_client.post(reverse("jobs:cancel", args=[job.pk])).status_code == 302
    job.refresh_from_db()
    assert job.state == Job.State.CANCELLED


def test_nobody_else_sees_cancels_or_downloads_a_job(other_client, user, media_root):
    running = running_job(user)
    done = succeeded_job(user)
    assert other_client.post(reverse("jobs:cancel", args=[running.job.pk])).status_code == 404
    assert other_client.get(reverse("jobs:download", args=[done.pk])).status_code == 404
    page = other_client.get(reverse("jobs:list")).content.decode()
    assert f"job-{running.job.pk}" not in page and f"job-{done.pk}" not in page
    running.job.refresh_from_db()
    assert running.job.state == Job.State.RUNNING


def test_owner_downloads_the_file(user_client, user, media_root):
    done = succeeded_job(user, b"\x1f\x8b gzip bytes")
    response = user_client.get(reverse("jobs:download", args=[done.pk]))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"\x1f\x8b gzip bytes"
    assert response["Content-Disposition"] == 'attachment; filename="notifications.ndjson.gz"'
    assert response["Cache-Control"] == "private, no-store"


def test_unfinished_or_expired_files_are_404(user_client, user, media_root):
    running = running_job(user)
    assert user_client.get(reverse("jobs:download", args=[running.job.pk])).status_code == 404
    done = succeeded_job(user)
    done.result.storage.delete(done.result.name)
    assert user_client.get(reverse("jobs:download", args=[done.pk])).status_code == 404


def test_a_member_starts_a_room_export(user_client, user, django_capture_on_commit_callbacks):
    from django_tasks_db.models import DBTaskResult

    room = room_with("secret", private=True, members=[user])
    with django_capture_on_commit_callbacks(execute=True):
        response = user_client.post(reverse("jobs:room_export", args=[room.slug]))
    assert response.status_code == 302
    job = Job.objects.get(owner=user)
    assert (job.kind, job.title) == ("room_export", "Export of a room's history: #secret")
    task = DBTaskResult.objects.get(args_kwargs__args=[job.pk])
    assert task.args_kwargs["kwargs"] == {"room_id": room.pk, "export_format": "ndjson"}


def test_outsiders_cannot_export_a_private_room(other_client, user):
    room = room_with("secret", private=True, members=[user])
    assert other_client.post(reverse("jobs:room_export", args=[room.slug])).status_code == 404
    assert other_client.post(reverse("jobs:room_export", args=["nowhere"])).status_code == 404
    assert not Job.objects.exists()


def test_an_expired_file_is_404_before_the_sweep_runs(user_client, user, media_root, settings):
    from datetime import timedelta

    from django.utils import timezone

    done = succeeded_job(user)
    Job.objects.filter(pk=done.pk).update(
        finished_at=timezone.now() - timedelta(hours=settings.JOB_RESULT_TTL_HOURS, seconds=1)
    )
    assert user_client.get(reverse("jobs:download", args=[done.pk])).status_code == 404


def test_staff_see_jobs_in_the_admin_read_only(client, staff_user, user):
    job = queued_job(user)
    client.force_login(staff_user)
    listing = client.get(reverse("admin:jobs_job_changelist"))
    assert listing.status_code == 200 and f"{job.pk}" in listing.content.decode()
    assert client.get(reverse("admin:jobs_job_add")).status_code == 403
