"""``/metrics`` (streamsite.observability): who may read it, and what it reports after
known activity, in one process and summed over ``serve``'s workers."""

import asyncio
import contextlib
from pathlib import Path

import httpx
import pytest
from asgiref.sync import sync_to_async
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from streamsite.testing.live_server import session_cookies
from streamsite.testing.sse import StreamReader

TOKEN = "metrics-test-token"
NOTIFICATIONS = {"app": "notifications"}


def value(text: str, name: str, labels: dict | None = None) -> float | None:
    """The sample ``name{labels}`` in a /metrics answer (None if absent)."""
    labels = labels or {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


# Access ---------------------------------------------------------------------------------


@pytest.fixture
def token(settings):
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


@pytest.mark.django_db
def test_anonymous_and_non_staff_users_get_404(client, user, token):
    assert client.get("/metrics").status_code == 404
    client.force_login(user)
    response = client.get("/metrics")
    assert response.status_code == 404
    assert b"streamsite_" not in response.content


@pytest.mark.django_db
def test_staff_get_the_metrics_never_cached(client, staff_user):
    client.force_login(staff_user)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert "no-cache" in response["Cache-Control"] and "no-store" in response["Cache-Control"]
    assert value(response.text, "streamsite_streams_open", NOTIFICATIONS) is not None


@pytest.mark.django_db
def test_the_right_bearer_token_gets_the_metrics_and_a_wrong_one_404(client, token):
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    for wrong in (f"Bearer {TOKEN}x", "Bearer ", TOKEN, f"Basic {TOKEN}"):
        assert client.get("/metrics", HTTP_AUTHORIZATION=wrong).status_code == 404, wrong


@pytest.mark.django_db
def test_no_token_configured_means_no_token_access(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


@pytest.mark.django_db
def test_requests_are_counted_by_url_name_but_not_metrics_itself(client, token):
    def count(view: str, status: str) -> float:
        labels = {"view": view, "method": "GET", "status": status}
        return REGISTRY.get_sample_value("streamsite_http_requests_total", labels) or 0.0

    home, unmatched = count("home", "200"), count("unmatched", "404")
    scrapes = count("metrics", "200")
    client.get("/")
    client.get("/no/such/page/at-all")
    client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert count("home", "200") == home + 1
    assert count("unmatched", "404") == unmatched + 1
    assert count("metrics", "200") == scrapes


def test_error_log_records_are_counted():
    import logging

    before = REGISTRY.get_sample_value("streamsite_log_errors_total")
    logging.getLogger("streamsite.tests").error("counted")
    logging.getLogger("streamsite.tests").warning("not counted")
    assert REGISTRY.get_sample_value("streamsite_log_errors_total") == before + 1


# Live servers -----------------------------------------------------------------------------


async def scrape(server) -> str:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        response = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    return response.text


async def streams_open(server) -> float:
    return value(await scrape(server), "streamsite_streams_open", NOTIFICATIONS) or 0.0


async def until_streams_open(server, expected: float, within: float = 10) -> None:
    """Scrape until the gauge reads ``expected``: a client's hang-up reaches the server's
    stream a moment later, with no signal to wait on from here."""
    async with asyncio.timeout(within):
        while (got := await streams_open(server)) != expected:  # noqa: ASYNC110 - bounded
            await asyncio.sleep(0.05)
    assert got == expected


async def open_streams(stack, server, users) -> list[StreamReader]:
    """Open a notification stream per user; each counts once its first event has come.

    Keep the readers: a reader dropped closes its response, and so its stream."""
    readers = []
    for user in users:
        cookies = await sync_to_async(session_cookies)(user)
        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=server.url, cookies=cookies, timeout=20)
        )
        response = await stack.enter_async_context(client.stream("GET", "/notifications/stream/"))
        assert response.status_code == 200
        reader = StreamReader(response.aiter_raw())
        await reader.until(lambda e: e["event"] == "unread")
        readers.append(reader)
    return readers


@pytest.mark.live_server
@pytest.mark.timeout(90)
async def test_three_streams_move_the_gauge_by_three_and_back(live_server_factory, make_user):
    server = live_server_factory("uvicorn", METRICS_TOKEN=TOKEN)
    users = [await sync_to_async(make_user)(f"reader{n}") for n in range(3)]
    before = await streams_open(server)
    async with contextlib.AsyncExitStack() as stack:
        readers = await open_streams(stack, server, users)
        assert await streams_open(server) == before + 3
        assert len(readers) == 3
    await until_streams_open(server, before)


@pytest.mark.live_server
@pytest.mark.timeout(120)
async def test_every_worker_of_serve_is_counted(
    live_server_factory, private_redis, make_user, tmp_path
):
    """Two uvicorn workers, one scrape: whichever worker answers, it sums both workers'
    files, so the figure is the same on every scrape."""
    directory = tmp_path / "metrics"
    (directory / "stale").mkdir(parents=True)
    (directory / "counter_1.db").write_bytes(b"from a previous run")  # serve empties it
    server = live_server_factory(
        "uvicorn",
        workers=2,
        REDIS_URL=private_redis.url,
        METRICS_TOKEN=TOKEN,
        PROMETHEUS_MULTIPROC_DIR=str(directory),
    )
    assert not (directory / "counter_1.db").exists()
    users = [await sync_to_async(make_user)(f"reader{n}") for n in range(6)]
    async with contextlib.AsyncExitStack() as stack:
        readers = await open_streams(stack, server, users)
        assert len(worker_pids(directory)) == 2
        for _ in range(6):  # new connections: the kernel hands them to either worker
            assert await streams_open(server) == 6
        assert len(readers) == 6
    await until_streams_open(server, 0)


def worker_pids(directory: Path) -> set[str]:
    """The processes that keep live gauges in ``directory`` (one file each)."""
    return {path.stem.rsplit("_", 1)[1] for path in directory.glob("gauge_livesum_*.db")}
