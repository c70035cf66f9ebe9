"""Bad HTTP input on real servers: a 4xx, never a 500, never a traceback in the log.

Issue #13's HTTP rows, on the development command (``runserver``: daphne with DEBUG on),
bare daphne and the production command (``serve``: uvicorn, DEBUG off).
"""

import re
import socket

import httpx
import pytest

from assistant.models import Conversation
from chat.tests.factories import room_with
from streamsite.testing.live_server import session_cookies

pytestmark = pytest.mark.live_server

#: Lines a server logs for its own failures (a client's mistake is at most a WARNING).
FAILURES = re.compile(r"Traceback|\bERROR\b|\bCRITICAL\b|Internal Server Error|Exception in ASGI")
HUGE = "9" * 4000
HUGER = "9" * 5000  # past Python's 4,300-digit limit for int()


@pytest.fixture(params=["runserver", "daphne", "uvicorn"])
def any_server(request, live_servers, live_server_factory):
    """Each way streamsite is served: ``runserver`` itself, bare daphne, ``serve``."""
    if request.param == "runserver":
        return live_server_factory("runserver")
    return live_servers(request.param)


def raw_get(server, target: str) -> tuple[int, bytes]:
    """GET ``target`` exactly as written (HTTP clients normalise ``..`` away)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(
            f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        )
        response = b""
        while chunk := connection.recv(65536):
            response += chunk
    status = int(response.split(b" ", 2)[1])
    return status, response.partition(b"\r\n\r\n")[2]


def assert_no_failure_logged(server, mark: int) -> None:
    log = server.log_since(mark)
    failures = [line for line in log.splitlines() if FAILURES.search(line)]
    assert not failures, log


def test_static_path_traversal_is_404(any_server):
    """Issue #13: `/static/../streamsite/settings.py` under runserver was a 500
    (SuspiciousFileOperation from Django's static handler); `serve` answered 404."""
    mark = any_server.log_mark()
    for target in ("/static/../streamsite/settings.py", "/static/..%2fstreamsite/settings.py"):
        status, body = raw_get(any_server, target)
        assert status == 404, (target, status)
        assert b"SECRET_KEY" not in body
    assert raw_get(any_server, "/static/chat/chat.js")[0] == 200  # static files still served
    assert_no_failure_logged(any_server, mark)


@pytest.fixture
def logged_in(transactional_db, user):
    """Cookies of a logged-in user who has a room and a conversation to ask about."""
    room_with("lobby")
    conversation = Conversation.objects.create(owner=user)
    return session_cookies(user), conversation.pk


def test_huge_integers_in_query_parameters_and_headers_are_refused_or_ignored(
    any_server, logged_in
):
    """Issue #13: `GET /chat/<slug>/?before=<4,000 digits>` was a 500 on both servers.

    Every integer the views read from a URL or header, with numbers past any id (and past
    Python's 4,300-digit limit for ``int()``): a 400, or the first page. Streams that accept
    the request are read until their first bytes, then dropped.
    """
    cookies, conversation = logged_in
    mark = any_server.log_mark()
    refused = {
        f"/chat/lobby/?before={HUGE}": {},
        f"/chat/lobby/?before={HUGER}": {},
        "/chat/lobby/?before=9223372036854775808": {},  # 2**63: no bigint holds it
        "/chat/lobby/?before=%C2%B2": {},  # "²", a digit to str.isdigit
        f"/notifications/stream/?last_event_id={HUGER}": {},
        "/notifications/stream/": {"Last-Event-ID": HUGE},
        f"/assistant/{conversation}/stream?after=1:{HUGER}": {},
        f"/assistant/{conversation}/stream": {"Last-Event-ID": f"{HUGE}:1"},
    }
    # Ids in paths: Django's int converter takes any digits; past a bigint, no such thing.
    not_found = [f"/assistant/{'9' * 25}/", f"/assistant/{'9' * 25}/stream", f"/assistant/{HUGER}/"]
    first_page = [f"/notifications/?page={HUGE}", f"/notifications/?page={HUGER}"]
    with httpx.Client(base_url=any_server.url, cookies=cookies, timeout=10) as client:
        for path, headers in refused.items():
            response = client.get(path, headers=headers)
            assert response.status_code == 400, (path[:80], response.status_code)
        for path in not_found:
            assert client.get(path).status_code == 404, path[:80]
        for path in first_page:
            assert client.get(path).status_code == 200, path[:80]
        client.get("/notifications/")  # the CSRF cookie, for a post with an id in its path
        response = client.post(
            f"/notifications/{'9' * 25}/read/",
            headers={"X-CSRFToken": client.cookies["csrftoken"], "Accept": "application/json"},
        )
        assert response.status_code == 200 and response.json()["changed"] == 0
    assert_no_failure_logged(any_server, mark)


def test_too_many_query_parameters_are_a_400(any_server, logged_in):
    """Issue #13: 2,000 parameters (past DATA_UPLOAD_MAX_NUMBER_FIELDS) were a 500 page
    under runserver: DEBUG's technical page read the parameters again."""
    cookies, _conversation = logged_in
    mark = any_server.log_mark()
    query = "&".join(["a=1"] * 2000)
    with httpx.Client(base_url=any_server.url, cookies=cookies, timeout=10) as client:
        for path in ("/notifications/", "/chat/lobby/", "/accounts/login/"):
            response = client.get(f"{path}?{query}")
            assert response.status_code == 400, (path, response.status_code)
    assert_no_failure_logged(any_server, mark)


def test_too_many_form_fields_or_a_too_large_form_body_are_a_400(any_server, logged_in):
    """The same for a form body (too many fields, or too large): the CSRF check reads it,
    and DEBUG's error page again."""
    cookies, _conversation = logged_in
    mark = any_server.log_mark()
    body = "&".join(["a=1"] * 2000)
    with httpx.Client(base_url=any_server.url, cookies=cookies, timeout=10) as client:
        client.get("/notifications/")  # sets the CSRF cookie: the check then reads the body
        response = client.post(
            "/notifications/read-all/",
            content=body,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Origin": any_server.url,
            },
        )
        assert response.status_code == 400, response.status_code
        too_large = client.post(
            "/notifications/read-all/",
            content="a=" + "x" * (3 * 1024 * 1024),  # past DATA_UPLOAD_MAX_MEMORY_SIZE
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Origin": any_server.url,
            },
        )
        assert too_large.status_code == 400, too_large.status_code
    assert_no_failure_logged(any_server, mark)
