"""Job writes: each publishes the job to its owner's stream after commit; progress is
coalesced before it is written; cancel and finish cannot overwrite each other."""

import io

import pytest
from django.core.files.base import ContentFile

from jobs import services
from jobs.models import Job
from jobs.services import JobCancelled
from jobs.tests.factories import queued_job, running_job, succeeded_job
from notifications.events import user_key
from notifications.models import Notification


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(services.time, "monotonic", clock)
    return clock


def job_events(events, user):
    return [e["data"] for key, e in events if key == user_key(user.pk) and e["kind"] == "extra"]


def test_start_publishes_the_queued_job_to_its_owner(capture_published, user):
    with capture_published() as events:
        job = queued_job(user)
    [data] = job_events(events, user)
    assert data == {
        "id": job.pk,
        "kind": "notifications_export",
        "title": "Export of my notifications",
        "state": "queued",
        "done": 0,
        "total": None,
        "rate": None,
        "eta_seconds": None,
        "result_url": None,
        "error": "",
        "seq": 1,
    }


def test_a_job_begins_once(user):
    job = queued_job(user)
    assert services.job_begin(job.pk) is not None
    assert services.job_begin(job.pk) is None


def test_progress_is_written_at_most_every_quarter_second_latest_count_wins(
    capture_published, user, clock, settings
):
    settings.JOB_PROGRESS_SECONDS = 0.25
    progress = running_job(user, total=1000)
    with capture_published() as events:
        for _ in range(40):
            clock.now += 0.0625  # 16 units a second, for 2.5 s
            progress.advance(1)
    written = job_events(events, user)
    assert [data["done"] for data in written] == [4, 8, 12, 16, 20, 24, 28, 32, 36, 40]
    assert [data["seq"] for data in written] == sorted({data["seq"] for data in written})
    progress.job.refresh_from_db()
    assert progress.job.done == 40


def test_rate_and_time_left(user, clock, settings):
    from datetime import timedelta

    from jobs.events import job_payload

    progress = running_job(user, total=1000)
    job = progress.job
    payload = job_payload(job, now=job.started_at + timedelta(seconds=10))
    assert payload["rate"] is None and payload["eta_seconds"] is None
    job.done = 250
    payload = job_payload(job, now=job.started_at + timedelta(seconds=10))
    assert payload["rate"] == 25.0
    assert payload["eta_seconds"] == 30


def test_cancel_stops_the_task_at_its_next_write_and_keeps_how_far_it_got(
    capture_published, user, other_user, clock
):
    progress = running_job(user)
    assert services.job_cancel(user=other_user, job_id=progress.job.pk) is None
    assert services.job_cancel(user=user, job_id=progress.job.pk) is not None
    progress.advance(7)
    clock.now += 1
    with pytest.raises(JobCancelled):
        progress.advance(1)
    with capture_published() as events:
        job = progress.cancelled()
    assert job.state == Job.State.CANCELLED
    assert job.done == 8
    [data] = job_events(events, user)
    assert (data["state"], data["done"]) == ("cancelled", 8)
    assert services.job_cancel(user=user, job_id=job.pk) is None  # finished already


def test_a_job_cancelled_at_the_last_moment_leaves_no_file(user, media_root):
    progress = running_job(user, total=1)
    services.job_cancel(user=user, job_id=progress.job.pk)
    with pytest.raises(JobCancelled):
        progress.succeed("notifications.ndjson.gz", ContentFile(b"rows"))
    assert not list(media_root.rglob("*.gz"))
    progress.job.refresh_from_db()
    assert progress.job.state == Job.State.CANCELLED and not progress.job.result


def test_success_notifies_the_owner_with_the_download_link(capture_published, user, media_root):
    progress = running_job(user, total=1)
    progress.advance(1)
    with capture_published() as events:
        job = progress.succeed("notifications.ndjson.gz", ContentFile(b"rows"))
    [data] = job_events(events, user)
    assert data["state"] == "succeeded"
    assert data["result_url"] == f"/jobs/{job.pk}/download/"
    note = Notification.objects.get(recipient=user)
    assert (note.title, note.url, note.level) == (
        "Your export is ready",
        data["result_url"],
        "success",
    )


def test_failure_notifies_the_owner_with_the_reason(user):
    progress = running_job(user)
    job = progress.fail("The export failed on our side. Try again later.")
    assert job.state == Job.State.FAILED
    note = Notification.objects.get(recipient=user)
    assert note.title == "Export of my notifications failed"
    assert note.body == "The export failed on our side. Try again later."
    assert progress.fail("again") is None  # a finished job stays as it finished


def test_expired_jobs_go_with_their_files(user, media_root, settings):
    from datetime import timedelta

    from django.core.management import call_command
    from django.utils import timezone

    settings.JOB_RESULT_TTL_HOURS = 24
    old, recent = succeeded_job(user), succeeded_job(user)
    running = running_job(user).job
    Job.objects.filter(pk=old.pk).update(finished_at=timezone.now() - timedelta(hours=25))
    assert (media_root / old.result.name).exists()
    out = io.StringIO()
    call_command("jobs_expire", stdout=out)
    assert out.getvalue() == "Deleted 1 expired job(s).\n"
    assert set(Job.objects.values_list("pk", flat=True)) == {recent.pk, running.pk}
    assert not (media_root / old.result.name).exists()
    assert (media_root / recent.result.name).exists()
    assert services.jobs_expire() == 0
