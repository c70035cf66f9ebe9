"""Look inside the channel layer from tests, and run a private Redis that can be restarted."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from channels.layers import InMemoryChannelLayer

from streamsite.testing.child_process import end_with_this_process


async def group_members(layer, group: str) -> set[str]:
    """The channels currently in ``group``, read from the layer's own storage."""
    if isinstance(layer, InMemoryChannelLayer):
        return set(layer.groups.get(group, {}))
    key = layer._group_key(group)
    async with layer.connection(layer.consistent_hash(group)) as connection:
        return {member.decode() for member in await connection.zrange(key, 0, -1)}


class PrivateRedis:
    """A redis-server of the test's own on a free port: it can be stopped and restarted.

    The machine's shared Redis must not be restarted under other tests; this one can.
    Like the CI Redis it keeps nothing on disk, so a restart loses every group.
    """

    def __init__(self) -> None:
        self.binary = shutil.which("redis-server")
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self._dir = tempfile.mkdtemp(prefix="streamsite-redis-")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        if self.port is None:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self.port = probe.getsockname()[1]
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir,
            ],
            stdout=subprocess.DEVNULL,
            preexec_fn=end_with_this_process(),  # gone with a killed pytest
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.02)  # not listening yet: poll until it is (bounded above)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def restart(self, *, keep_data: bool = False) -> None:
        """Kill and start again on the same port, empty, as a crashed Redis comes back.

        With ``keep_data`` it shuts down cleanly instead, saving its data, and loads it
        again, as a restarted production Redis does: the groups survive, so a hub only
        sees its blocking receive fail (it resyncs once), and what is lost is what was
        published across the restart.
        """
        dump = Path(self._dir) / "dump.rdb"
        if keep_data and self.process is not None and self.process.poll() is None:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                sock.sendall(b"SHUTDOWN SAVE\r\n")
            self.process.wait(10)
        else:
            self.stop()
            dump.unlink(missing_ok=True)
        self.start()


def flush_layer(layer) -> None:
    """Empty the channel layer's queued messages from synchronous code, after a test.

    ``RedisChannelLayer.flush()`` closes the connection pools of every event loop that used
    the layer, including the (finished) loop of an async test, which fails; so Redis keys
    are deleted with a client of our own. Group memberships stay: the session's live
    servers keep theirs across tests (a test's own hubs leave their groups when closed).
    """
    if isinstance(layer, InMemoryChannelLayer):
        layer.channels.clear()
        layer.groups.clear()
        return
    import redis

    for host in layer.hosts:
        client = redis.Redis.from_url(host["address"])
        try:
            groups = f"{layer.prefix}:group:".encode()
            keys = [
                key
                for key in client.scan_iter(match=f"{layer.prefix}*", count=1000)
                if not key.startswith(groups)
            ]
            for start in range(0, len(keys), 1000):
                client.delete(*keys[start : start + 1000])
        finally:
            client.close()
