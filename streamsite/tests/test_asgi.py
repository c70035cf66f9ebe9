"""ASGI routing: pages through Django, WebSockets through Channels behind the Origin check."""

import httpx
import pytest
from channels.testing import WebsocketCommunicator
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from streamsite.asgi import application


@pytest.mark.parametrize(
    "origin", [b"http://evil.example", b"http://127.0.0.1.evil.example", b"null"]
)
async def test_websocket_from_a_foreign_origin_is_refused(origin, db):
    communicator = WebsocketCommunicator(
        application, "/ws/chat/lobby/", headers=[(b"origin", origin), (b"host", b"127.0.0.1")]
    )
    connected, _ = await communicator.connect()
    assert connected is False
    await communicator.disconnect()


async def test_websocket_to_an_unknown_path_closes_with_4404(db):
    communicator = WebsocketCommunicator(
        application, "/ws/nowhere/", headers=[(b"origin", b"http://127.0.0.1:8000")]
    )
    connected, _ = await communicator.connect()
    assert connected is True
    closed = await communicator.receive_output()
    assert closed == {"type": "websocket.close", "code": 4404}
    await communicator.disconnect()


def test_login_page_renders(client):
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    assert b'name="username"' in response.content
    assert b"csrfmiddlewaretoken" in response.content


def test_admin_renders_for_staff(client, staff_user):
    client.force_login(staff_user)
    response = client.get("/admin/")
    assert response.status_code == 200
    assert b"Site administration" in response.content


def test_admin_sends_anonymous_users_to_its_login(client, db):
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_home_shows_the_username(user_client, user):
    response = user_client.get("/")
    assert response.status_code == 200
    assert f'data-testid="username">{user.username}<'.encode() in response.content


def test_logout_is_a_post_with_csrf(user_client):
    response = user_client.get("/")
    assert b'action="/accounts/logout/"' in response.content
    assert user_client.post("/accounts/logout/").status_code == 302
    assert b"Log in" in user_client.get("/").content


@pytest.mark.live_server
def test_pages_and_static_files_are_served(live_server_asgi):
    """Both servers serve pages and CSS; the production one, with DEBUG off, hashed names."""
    page = httpx.get(f"{live_server_asgi.url}/accounts/login/", timeout=10)
    assert page.status_code == 200
    href = page.text.split('rel="stylesheet" href="', 1)[1].split('"', 1)[0]
    if live_server_asgi.kind == "uvicorn":
        assert href.startswith("/static/css/site.") and href != "/static/css/site.css"
    css = httpx.get(f"{live_server_asgi.url}{href}", timeout=10)
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert "--accent:" in css.text  # the site's colours


@pytest.mark.live_server
async def test_live_server_refuses_a_foreign_websocket_origin(live_server_asgi):
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            f"{live_server_asgi.ws_url}/ws/chat/lobby/", origin="http://evil.example"
        ):
            pass
    assert refused.value.response.status_code == 403


@pytest.mark.live_server
async def test_live_server_accepts_its_own_origin(live_server_asgi):
    async with connect(
        f"{live_server_asgi.ws_url}/ws/nowhere/", origin=live_server_asgi.url
    ) as socket:
        await socket.wait_closed()
    assert socket.close_code == 4404


@pytest.mark.live_server
def test_production_modules_import_hashed_names(live_servers, transactional_db, user):
    """The hashed notifications module imports its siblings by their hashed names too."""
    import re

    from streamsite.testing.live_server import session_cookies

    server = live_servers("uvicorn")  # the production server: DEBUG off, hashed names
    page = httpx.get(f"{server.url}/", cookies=session_cookies(user), timeout=10)
    src = re.search(r'src="(/static/js/notifications\.[0-9a-f]{12}\.js)"', page.text)
    assert src, "the page should load the hashed notifications module"
    module = httpx.get(f"{server.url}{src.group(1)}", timeout=10).text
    imports = re.findall(r'from "\./([^"]+)"', module)
    assert imports and all(re.search(r"\.[0-9a-f]{12}\.js$", name) for name in imports)
