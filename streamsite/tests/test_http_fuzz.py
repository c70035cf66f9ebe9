"""Nothing a client puts in a query parameter, header or path id makes a view fail
(issue #13's fuzzing of HTTP inputs, with hypothesis).

Every input the views read (``Last-Event-ID`` and ``last_event_id`` on the notification
stream, ``Last-Event-ID`` and ``after`` on the assistant's, ``before`` on a room, ``page``
on the notification list, ids in paths) gets any text: huge and negative numbers, Unicode
digits, percent-encoded bytes that are not UTF-8, empty, very long. The answer is never a
500, its status is one the view means, and nothing is logged above WARNING. Streams that
accept the request are not read (their status and headers are what is checked).
"""

import logging
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assistant.models import Conversation
from chat.tests.factories import room_with

FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: Text as a client may send it: any printable text (no lone surrogates: they cannot be
#: encoded in a request), numbers of every size and sign, digits of other scripts.
numbers = st.integers(min_value=-(10**30), max_value=10**30).map(str)
huge = st.integers(min_value=1, max_value=6000).map(lambda n: "9" * n)
any_text = (
    st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
    | numbers
    | huge
    | st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=8)
    | st.sampled_from(["", " 1", "1 ", "+1", "1e3", "0x10", "1:1", "1:", ":1", "1,2", "-0"])
)
#: Raw query values: percent-encoded bytes, UTF-8 or not.
raw_bytes = st.binary(max_size=30).map(lambda b: quote(b, safe=""))
query_values = any_text.map(lambda text: quote(text, safe="")) | raw_bytes
#: Header values must be latin-1 text without line breaks.
header_values = any_text.filter(
    lambda text: text.isprintable() and all(ord(c) < 256 for c in text)
).map(str.strip)


@pytest.fixture
def logged_in(client, user, transactional_db):
    """A logged-in client (the streams read the user on a connection of their own, so the
    data is committed), a room and a conversation."""
    client.force_login(user)
    room_with("lobby")
    return client, Conversation.objects.create(owner=user).pk


@pytest.fixture
def quiet_log(caplog):
    """Fail an example that made anything log above WARNING."""
    caplog.set_level(logging.WARNING)

    def check() -> None:
        loud = [r for r in caplog.records if r.levelno > logging.WARNING or r.exc_info]
        caplog.clear()
        assert not loud, [r.getMessage() for r in loud]

    return check


def get(client, path: str, **headers):
    response = client.get(path, headers=headers)
    assert response.status_code != 500, path[:100]
    return response.status_code


@FUZZ
@given(value=query_values, header=header_values)
def test_notification_stream_resume_position_is_a_400_or_a_stream(
    logged_in, quiet_log, value, header
):
    client, _conversation = logged_in
    assert get(client, f"/notifications/stream/?last_event_id={value}") in {200, 400}
    assert get(client, "/notifications/stream/", **{"Last-Event-ID": header}) in {200, 400}
    quiet_log()


@FUZZ
@given(value=query_values, header=header_values)
def test_assistant_stream_cursor_is_a_400_or_a_stream(logged_in, quiet_log, value, header):
    client, conversation = logged_in
    url = f"/assistant/{conversation}/stream"
    assert get(client, f"{url}?after={value}") in {200, 400}
    assert get(client, url, **{"Last-Event-ID": header}) in {200, 400}
    quiet_log()


@FUZZ
@given(before=query_values, page=query_values)
def test_room_before_and_notification_page_are_a_page_or_a_400(logged_in, quiet_log, before, page):
    client, _conversation = logged_in
    assert get(client, f"/chat/lobby/?before={before}") in {200, 400}
    assert get(client, f"/notifications/?page={page}") in {200, 400}
    quiet_log()


@FUZZ
@given(raw_id=st.text("0123456789", min_size=1, max_size=60) | huge)
def test_ids_in_paths_are_found_or_not(logged_in, quiet_log, raw_id):
    client, conversation = logged_in
    for path in (
        f"/assistant/{raw_id}/",
        f"/assistant/{raw_id}/stream",
        f"/assistant/{conversation}/answers/{raw_id}/stop",
        f"/jobs/{raw_id}/download/",
    ):
        assert get(client, path) in {200, 404, 405}, path[:80]
    response = client.post(f"/notifications/{raw_id}/read/", headers={"Accept": "application/json"})
    assert response.status_code in {200, 404}
    quiet_log()


#: What an HTTP client library will not send: broken percent-encoding, raw bytes that are
#: not UTF-8 in a header, a header far longer than any id.
RAW_REQUESTS = [
    (b"/chat/lobby/?before=%ZZ%", b""),
    (b"/chat/lobby/?before=%ff%fe%00", b""),
    (b"/notifications/?page=%c0%af", b""),
    (b"/notifications/stream/?last_event_id=%ed%a0%80", b""),  # an encoded lone surrogate
    (b"/notifications/stream/", b"Last-Event-ID: \xff\xfe\x80\r\n"),
    (b"/notifications/stream/", b"Last-Event-ID: " + b"9" * 8000 + b"\r\n"),
    (b"/assistant/%d/stream", b"Last-Event-ID: 1:\xc3\x28\r\n"),
    (b"/assistant/%d/stream?after=1%3A%ZZ", b""),
]


@pytest.mark.live_server
@pytest.mark.parametrize("kind", ["daphne", "uvicorn"])
def test_raw_bytes_and_broken_percent_encoding_on_a_live_server(
    kind, live_servers, transactional_db, user
):
    """Raw requests on the real servers: never a 500; the rig's log watch fails the test
    if the server logged an error or a traceback for any of them."""
    import socket

    from streamsite.testing.live_server import session_cookies

    server = live_servers(kind)
    conversation = Conversation.objects.create(owner=user).pk
    room_with("lobby")
    cookie = "; ".join(f"{k}={v}" for k, v in session_cookies(user).items()).encode()
    for target, header in RAW_REQUESTS:
        target = target.replace(b"%d", str(conversation).encode(), 1)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
            connection.sendall(
                b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: " + cookie
                + b"\r\n" + header + b"Connection: close\r\n\r\n"
            )  # fmt: skip
            head = b""
            while b"\r\n" not in head and (chunk := connection.recv(4096)):
                head += chunk
        status = int(head.split(b" ", 2)[1])
        assert status in {200, 400, 404, 431}, (target, header[:40], status)
