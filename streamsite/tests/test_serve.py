"""The production command refuses setups that would silently misbehave."""

import pytest
from django.core.management import CommandError, call_command

from streamsite.management.commands.serve import uvicorn_argv


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
