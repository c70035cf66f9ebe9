"""Events that arrive in the opposite order of their ids (two processes published them a
moment apart): the stream sends ids in order and the resume id never passes one it has
not sent (``previous``, notifications/streams.py). Found by the fault campaign for chat;
the same chain per user for notifications (issue #13)."""

import json

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from notifications import services
from notifications.tests.streaming import Stream
from streamsite.streaming import publish as publish_module
from streamsite.streaming.hub import expand_message
from streamsite.streaming.publish import apublish

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("channel_layer", "close_the_hub"),
]


@pytest.fixture
def held_back(monkeypatch):
    """Publishes after commit are kept here instead of sent: the test sends them, in the
    order it wants (as a channel layer fed by two processes may deliver them)."""
    kept: list[tuple[str, dict]] = []
    monkeypatch.setattr(
        publish_module, "publish", lambda group, message: kept.append((group, message))
    )
    return kept


def data_ids(stream: Stream) -> list[int]:
    return [
        json.loads(e["data"])["id"] for e in stream.reader.events if e["event"] == "notification"
    ]


async def test_a_notification_that_overtook_an_earlier_one_is_sent_after_it(user, held_back):
    stream = await Stream(user.pk, None).live()
    first = await sync_to_async(services.notification_create)(recipient=user, title="first")
    second = await sync_to_async(services.notification_create)(recipient=user, title="second")
    first_message, second_message = held_back
    held_back.clear()

    await apublish(*second_message)  # overtook the first
    await stream.reader.until(lambda e: e["event"] == "notification" and e["id"] == str(second.pk))
    assert stream.reader.notification_ids() == [first.pk, second.pk]  # read first, in order

    await apublish(*first_message)  # late: the client has it
    third = await sync_to_async(services.notification_create)(recipient=user, title="third")
    await apublish(*held_back.pop())
    await stream.reader.until(lambda e: e["event"] == "notification" and e["id"] == str(third.pk))
    assert stream.reader.notification_ids() == [first.pk, second.pk, third.pk]
    await stream.disconnect()


async def test_a_notification_overtaken_by_an_announcement_is_sent_under_the_resume_id(
    user, held_back
):
    """The one order the chain cannot name: an announcement (one event for everyone) with
    a higher id arrives before a user's own notification."""
    stream = await Stream(user.pk, None).live()
    own = await sync_to_async(services.notification_create)(recipient=user, title="own")
    news = await sync_to_async(services.announcement_create)(title="news")
    own_message, news_message = held_back
    held_back.clear()

    await apublish(*news_message)
    await apublish(*own_message)
    for _ in range(2):
        await stream.reader.until(lambda e: e["event"] == "notification")
    # Both arrived; the late one under the announcement's id, so a reconnect resumes after
    # the announcement and gets neither twice.
    assert data_ids(stream) == [news.pk, own.pk]
    assert stream.reader.notification_ids() == [news.pk, news.pk]
    await stream.disconnect()

    again = await Stream(user.pk, news.pk).live()
    assert again.reader.notification_ids() == []
    await again.disconnect()


async def test_a_previous_that_was_deleted_sends_what_follows_it(user):
    """The counters hand out the id drawn before (``previous``) even when that
    notification was deleted since: a stream that never sent it reads the feed, finds
    nothing in between, and sends the new one, once."""
    first = await sync_to_async(services.notification_create)(recipient=user, title="first")
    gone = await sync_to_async(services.notification_create)(recipient=user, title="gone")
    await sync_to_async(services.notifications_delete)(notification_ids=[gone.pk])
    stream = await Stream(user.pk, first.pk).live()

    sent = []
    real_publish = publish_module.publish
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            publish_module,
            "publish",
            lambda group, message: (sent.append(message), real_publish(group, message)),
        )
        after = await sync_to_async(services.notification_create)(recipient=user, title="after")
    await stream.reader.until(lambda e: e["event"] == "notification" and e["id"] == str(after.pk))
    assert stream.reader.notification_ids() == [after.pk]
    expected_previous = gone.pk if connection.vendor == "postgresql" else first.pk
    assert [event["previous"] for m in sent for _key, event in expand_message(m)] == [
        expected_previous
    ]
    await stream.disconnect()
