"""The lifespan protocol: shutdown hooks run on a graceful shutdown, one failure stops none."""

import asyncio

import pytest

from streamsite import lifespan


@pytest.fixture(autouse=True)
def collector_tunes(monkeypatch):
    """What startup asked of the garbage collector; the test process' own is left alone."""
    asked = []
    monkeypatch.setattr(lifespan, "garbage_collector_tune", asked.append)
    return asked


@pytest.fixture
def hooks(monkeypatch):
    registered = []
    monkeypatch.setattr(lifespan, "_shutdown_hooks", registered)
    monkeypatch.setattr(lifespan, "_startup_hooks", [])  # the apps' (live.listen...) need a server
    return registered


async def run_server_lifespan(shutdown: bool = True) -> list[dict]:
    """Drive ``lifespan_app`` as uvicorn does; return what it sent."""
    incoming: asyncio.Queue = asyncio.Queue()
    sent = []

    async def send(message):
        sent.append(message)

    await incoming.put({"type": "lifespan.startup"})
    if shutdown:
        await incoming.put({"type": "lifespan.shutdown"})
    async with asyncio.timeout(10):
        await lifespan.lifespan_app({"type": "lifespan"}, incoming.get, send)
    return sent


async def test_shutdown_runs_every_hook_in_order_then_completes(hooks):
    ran = []

    async def first():
        ran.append("first")

    async def second():
        ran.append("second")

    lifespan.on_shutdown(first)
    lifespan.on_shutdown(second)
    lifespan.on_shutdown(first)  # registered once
    sent = await run_server_lifespan()
    assert ran == ["first", "second"]
    assert [m["type"] for m in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


async def test_a_failing_hook_is_logged_and_the_others_still_run(hooks, caplog):
    ran = []

    async def broken():
        raise RuntimeError("boom")

    async def after():
        ran.append("after")

    lifespan.on_shutdown(broken)
    lifespan.on_shutdown(after)
    sent = await run_server_lifespan()
    assert ran == ["after"] and sent[-1]["type"] == "lifespan.shutdown.complete"
    assert "shutdown hook" in caplog.text and "boom" in caplog.text


async def test_a_hook_that_hangs_is_cut_off(hooks, monkeypatch, caplog):
    monkeypatch.setattr(lifespan, "SHUTDOWN_HOOK_SECONDS", 0.05)

    async def hangs():
        await asyncio.Event().wait()

    lifespan.on_shutdown(hangs)
    sent = await run_server_lifespan()
    assert sent[-1]["type"] == "lifespan.shutdown.complete"
    assert "TimeoutError" in caplog.text


async def test_startup_calls_the_startup_hooks(monkeypatch):
    started = []
    monkeypatch.setattr(lifespan, "_shutdown_hooks", [])
    monkeypatch.setattr(lifespan, "_startup_hooks", [])
    lifespan.on_startup(lambda: started.append("live"))
    await run_server_lifespan()
    assert started == ["live"]


async def test_startup_tunes_the_garbage_collector_after_the_hooks(
    monkeypatch, settings, collector_tunes
):
    """The app and what the hooks started are loaded by then: they are what gets frozen."""
    monkeypatch.setattr(lifespan, "_shutdown_hooks", [])
    monkeypatch.setattr(lifespan, "_startup_hooks", [])
    lifespan.on_startup(lambda: collector_tunes.append("hook"))
    settings.GC_YOUNG_THRESHOLD = 12_345
    sent = await run_server_lifespan()
    assert collector_tunes == ["hook", 12_345]
    assert sent[0] == {"type": "lifespan.startup.complete"}
