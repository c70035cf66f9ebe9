"""Reads of jobs: what a (re)connecting stream is told about the user's jobs."""

import json
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from jobs import selectors
from jobs.models import Job
from jobs.tests.factories import queued_job, running_job, succeeded_job
from notifications.tests.streaming import Stream
from streamsite.streaming.hub import close_hub


def test_snapshot_has_running_and_recently_finished_jobs_of_the_user_only(
    user, other_user, media_root
):
    running = running_job(user).job
    recent = succeeded_job(user)
    old = succeeded_job(user)
    Job.objects.filter(pk=old.pk).update(finished_at=timezone.now() - timedelta(days=1))
    queued_job(other_user)
    snapshot = selectors.stream_snapshot(user.pk)
    assert [event["key"] for event in snapshot] == [running.pk, recent.pk]
    assert [event["active"] for event in snapshot] == [True, False]
    assert snapshot[1]["data"]["result_url"] == f"/jobs/{recent.pk}/download/"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("channel_layer")
async def test_a_connecting_stream_is_told_where_the_users_jobs_stand(user, settings):
    """A reload shows the bar where it stands: the stream sends the job on connect."""
    settings.SSE_KEEPALIVE_SECONDS = 30
    progress = await sync_to_async(running_job)(user, total=500)
    progress.advance(120)
    await sync_to_async(progress.flush)()
    stream = Stream(user.pk, None)
    try:
        event = await stream.reader.until(lambda e: e["event"] == "job")
    finally:
        await stream.disconnect()
        await close_hub()
    data = json.loads(event["data"])
    assert (data["id"], data["state"], data["done"], data["total"]) == (
        progress.job.pk,
        "running",
        120,
        500,
    )
