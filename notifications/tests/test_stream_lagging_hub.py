"""A hub lagging behind must not send a reconnected client a notification it already has.

Found by the fault campaign (``make faults``, forced reconnects on ``serve --workers 2``):
a stream dropped on one worker and resumed on the other (``Last-Event-ID: 44``) was sent
26 again, delivered late by the second worker's hub. Ids follow commit order per user, so
a live id at or below the last id sent is one the client holds.
"""

from notifications.stream_state import StreamState


def event(notification_id: int) -> dict:
    return {
        "kind": "created", "id": notification_id, "unread": 1, "title": "t", "body": "",
        "url": "", "level": "info", "created_at": "2026-01-01T00:00:00+00:00", "read": False,
    }  # fmt: skip


def test_a_live_notification_the_client_already_has_is_not_sent_again():
    state = StreamState(last_id=44)
    assert b"event: notification" not in state.render_live(event(26))
    assert b"event: notification" in state.render_live(event(45))
    assert b"event: notification" not in state.render_live(event(45))  # delivered twice
