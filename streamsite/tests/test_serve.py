"""The production command refuses setups that would silently misbehave."""

import socket
import threading

import pytest
from django.core.management import CommandError, call_command

from streamsite.management.commands.serve import uvicorn_argv, wait_for_port


def test_several_workers_need_redis(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    with pytest.raises(CommandError, match="set REDIS_URL"):
        call_command("serve", workers=2, no_collectstatic=True)


def test_uvicorn_runs_with_uvloop_httptools_and_workers():
    argv = uvicorn_argv(host="0.0.0.0", port=9000, workers=3)  # noqa: S104
    joined = " ".join(argv)
    assert "-m uvicorn streamsite.asgi:application" in joined
    assert "--loop uvloop --http httptools" in joined
    assert "--workers 3" in joined
    assert "--host 0.0.0.0 --port 9000" in joined
    assert "--ws-max-size 65536" in joined
    assert "--ws-per-message-deflate false" in joined


def test_a_port_held_by_a_dying_predecessor_is_waited_for():
    """A restart right after a crash: the old workers still hold the port for a moment."""
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    assert not wait_for_port("127.0.0.1", port, 0.2)
    releasing = threading.Timer(0.3, holder.close)
    releasing.start()
    try:
        assert wait_for_port("127.0.0.1", port, 10)
    finally:
        releasing.cancel()
        holder.close()
