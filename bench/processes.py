"""The benchmark's child processes (servers, load generator, publishers) and /proc probes.

Every child runs in its own session (process group), so a Ctrl-C at the terminal reaches
only the harness, which then stops them all: ``stop_all()`` runs from its ``finally``.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from streamsite.testing.child_process import end_with_this_process

BASE_DIR = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STARTUP_SECONDS = 60

_children: list[subprocess.Popen] = []


def spawn(argv: list[str], *, env: dict, **kwargs) -> subprocess.Popen:
    """Start a child in its own process group and remember it for ``stop_all``."""
    process = subprocess.Popen(
        argv,
        cwd=BASE_DIR,
        env=env,
        start_new_session=True,
        # SIGTERM if the harness dies without cleaning up (SIGKILL): fork-safe.
        preexec_fn=end_with_this_process(),
        **kwargs,
    )
    _children.append(process)
    return process


def stop(process: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM to the child's process group, SIGKILL if it lingers."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout)
    if process in _children:
        _children.remove(process)


def stop_all() -> None:
    for process in list(_children):
        stop(process, timeout=5)


#: The plain Starlette SSE broadcaster (``bench.floor_sse``), served like streamsite.
FLOOR_SSE_APP = "bench.floor_sse:app"


#: ASGI servers other than uvicorn and daphne that serve streamsite on request, to compare
#: (issue #8): each with uvloop and one worker, its own defaults otherwise.
OTHER_ASGI_SERVERS = ("granian", "hypercorn")

#: A ``sitecustomize`` that turns every metric update into a no-op (its docstring says how).
NOMETRICS_PATH = BASE_DIR / "bench" / "nometrics"


def without_metrics(env: dict) -> dict:
    """``env`` with bench/nometrics first on ``PYTHONPATH``: a server started with it is
    streamsite whose metrics are never updated (the benchmarks' metrics-off twin)."""
    path = [str(NOMETRICS_PATH), env.get("PYTHONPATH", "")]
    return {**env, "PYTHONPATH": os.pathsep.join(p for p in path if p)}


def uvicorn_serving(app: str, fd: int, workers: int = 1) -> list[str]:
    """The production uvicorn command line (``manage.py serve``'s), serving ``app``."""
    from streamsite.management.commands.serve import uvicorn_argv

    argv = uvicorn_argv(host="127.0.0.1", port=0, workers=workers, fd=fd)
    argv[argv.index("streamsite.asgi:application")] = app
    return argv


class Server:
    """A server on a socket bound here and passed with ``--fd``: one process, or for the
    kind ``uvicorn2`` streamsite's ``serve --workers 2`` (uvicorn's supervisor and two
    worker processes sharing the socket; ``pids`` are the workers). ``granian`` and
    ``hypercorn`` serve streamsite with their own command lines (granian on the port
    found here, as it takes no inherited socket)."""

    def __init__(self, kind: str, env: dict, log_dir: Path, label: str) -> None:
        self.kind = kind
        self.workers = 2 if kind == "uvicorn2" else 1
        self.env = env
        self.log_path = log_dir / f"{label}.log"
        self.process: subprocess.Popen | None = None
        self.port: int | None = None

    @property
    def pid(self) -> int:
        """The process started (with several workers, their supervisor)."""
        assert self.process is not None
        return self.process.pid

    @property
    def pids(self) -> list[int]:
        """The processes that serve: the server itself, or its workers (uvicorn with
        several; granian and hypercorn may serve from a worker process even with one)."""
        if self.workers == 1 and self.kind not in OTHER_ASGI_SERVERS:
            return [self.pid]
        # uvicorn and hypercorn spawn their workers (multiprocessing's spawn_main);
        # granian forks them (the same command line as its supervisor).
        own = cmdline(self.pid)
        workers = [
            pid
            for pid in child_pids(self.pid)
            if b"spawn_main" in cmdline(pid) or cmdline(pid) == own
        ]
        return workers or [self.pid]

    def sockets_per_worker(self) -> list[int]:
        """Established client connections to the server's port held by each worker."""
        inodes = established_inodes(self.port)
        return [len(socket_inodes(pid) & inodes) for pid in self.pids]

    def command(self, fd: int) -> list[str]:
        if self.kind == "daphne":
            return [sys.executable, "-m", "daphne", "--fd", str(fd), "streamsite.asgi:application"]
        if self.kind == "hypercorn":
            return [
                sys.executable, "-m", "hypercorn", "--bind", f"fd://{fd}",
                "--worker-class", "uvloop", "--workers", "1", "streamsite.asgi:application",
            ]  # fmt: skip
        if self.kind == "granian":  # binds the port itself (start() freed it)
            return [
                str(Path(sys.executable).parent / "granian"), "--interface", "asgi",
                "--host", "127.0.0.1", "--port", str(self.port), "--loop", "uvloop",
                "--workers", "1", "streamsite.asgi:application",
            ]  # fmt: skip
        if self.kind == "starlette":
            return uvicorn_serving(FLOOR_SSE_APP, fd)
        return [
            sys.executable, "manage.py", "serve", "--fd", str(fd),
            "--workers", str(self.workers), "--no-collectstatic",
        ]  # fmt: skip

    def start(self) -> Server:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(4096)
        self.port = listener.getsockname()[1]
        fd = listener.fileno()
        passed = (fd,)
        if self.kind == "granian":  # it takes no inherited socket: the port is its to bind
            listener.close()
            passed = ()
        with open(self.log_path, "ab") as log:
            try:
                self.process = spawn(
                    self.command(fd), env=self.env, pass_fds=passed, stdout=log, stderr=log
                )
            finally:
                listener.close()  # the child has its own copy
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} exited at start-up:\n{self.log_tail()}")
            status = http_status(self.port, "/bench/ready/")
            if status == 200 and len(self.pids) == self.workers:
                return
            if status is not None:
                raise RuntimeError(f"{self.kind} answered {status}:\n{self.log_tail()}")
            time.sleep(0.1)
        raise RuntimeError(f"{self.kind} did not answer in {STARTUP_SECONDS}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)

    def log_tail(self, characters: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-characters:]

    def log_count(self, needle: str) -> int:
        return self.log_path.read_text(errors="replace").count(needle)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def http_status(port: int, path: str) -> int | None:
    """The status of a GET to 127.0.0.1:port, or None if nothing answers yet."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
            )
            head = sock.recv(64)
    except OSError:
        return None
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


class LineChild:
    """A child spoken to in JSON lines over its stdin and stdout."""

    def __init__(self, argv: list[str], env: dict) -> None:
        self.process = spawn(
            argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def send(self, message: dict) -> None:
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def receive(self, timeout: float) -> dict:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"{self.process.args[2]} did not answer in {timeout}s") from None
        if line is None:
            raise RuntimeError(f"{self.process.args[2]} exited ({self.process.wait()})")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"{self.process.args[2]}: {reply['error']}")
        return reply

    def request(self, message: dict, timeout: float) -> dict:
        self.send(message)
        return self.receive(timeout)

    @property
    def pid(self) -> int:
        return self.process.pid

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        stop(self.process)


class Profiler:
    """``py-spy record`` of a process until ``stop()``: collapsed stacks in ``path``."""

    def __init__(self, pid: int, path: Path, env: dict) -> None:
        self.path = path
        py_spy = Path(sys.executable).parent / "py-spy"
        self.process = spawn(
            [str(py_spy), "record", "--pid", str(pid), "--rate", "200", "--format", "raw",
             "--output", str(path), "--nonblocking"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(0.5)  # attached before the measurement starts

    def stop(self) -> None:
        """Stop sampling; py-spy writes its file on SIGINT."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(30)
        stop(self.process)


def load_client(env: dict) -> LineChild:
    return LineChild([sys.executable, "-m", "bench.sse_client"], env)


def publisher(env: dict, **options) -> LineChild:
    argv = [sys.executable, "-m", "bench.publisher"]
    for name, value in options.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    return LineChild(argv, env)


# /proc probes ----------------------------------------------------------------------------


def cpu_seconds(pid: int | list[int]) -> float:
    """User + system CPU time of a process (or the sum of several) so far."""
    if isinstance(pid, list):
        return sum(cpu_seconds(one) for one in pid)
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def status_kb(pid: int | list[int], field: str) -> int:
    """A ``kB`` line of /proc/<pid>/status (VmRSS, VmHWM), or ``Threads`` (summed over a
    list of processes; VmHWM so summed is the sum of each one's peak)."""
    if isinstance(pid, list):
        return sum(status_kb(one, field) for one in pid)
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss(pid: int | list[int]) -> None:
    """Make VmHWM start again from the current RSS."""
    for one in pid if isinstance(pid, list) else [pid]:
        with open(f"/proc/{one}/clear_refs", "w") as file:
            file.write("5")


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as file:
                if int(file.read().rpartition(")")[2].split()[1]) == pid:
                    found.append(int(entry))
    return sorted(found)


def cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read()
    except OSError:
        return b""


def pids_named(name: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as file:
                    if file.read().strip() == name:
                        pids.append(int(entry))
            except OSError:
                continue
    return pids


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, all cores."""
    with open("/proc/stat") as file:
        values = [int(v) for v in file.readline().split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


class Sampler:
    """Sample CPU time and RSS of the processes that matter, every ``interval`` seconds.

    ``cpu_percent(name, a, b)`` is the CPU used between two wall-clock times, as % of one
    core, from the samples around them. ``redis`` and ``postgres`` add up all processes of
    that name (other users' PostgreSQL sessions included): processes come and go, so each
    probe adds what every process used since the previous probe. With ``fds``, the server's
    open file descriptors are sampled too (``resources_at``).
    """

    def __init__(
        self,
        pids: dict[str, int | list[int]],
        interval: float = 0.1,
        *,
        others: bool = True,
        fds: bool = False,
    ):
        """``pids`` by name; RSS (and with ``fds``, open files) are sampled for ``server``."""
        self.pids = pids
        self.interval = interval
        self.samples: list[tuple[float, dict[str, float], int]] = []
        self.fds: list[int] | None = [] if fds else None  # one per sample
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._others = {"redis": "redis-server", "postgres": "postgres"} if others else {}
        self._seen: dict[str, dict[int, float]] = {name: {} for name in self._others}
        self._totals: dict[str, float] = dict.fromkeys(self._others, 0.0)

    def _probe(self) -> None:
        cpu = {}
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError):
                cpu[name] = cpu_seconds(pid)
        for name, command in self._others.items():
            seen, now = self._seen[name], {}
            for pid in pids_named(command):
                with contextlib.suppress(OSError):
                    now[pid] = cpu_seconds(pid)
            if self.samples:  # the first probe only sets the starting point
                self._totals[name] += sum(
                    max(0.0, v - seen.get(pid, 0.0)) for pid, v in now.items()
                )
            self._seen[name] = now
            cpu[name] = self._totals[name]
        cpu["machine"] = machine_busy_seconds()[0]
        try:
            rss = status_kb(self.pids["server"], "VmRSS")
        except (OSError, KeyError):
            rss = 0
        if self.fds is not None:
            self.fds.append(open_fds(self.pids["server"]))
        self.samples.append((time.time(), cpu, rss))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._probe()

    def __enter__(self) -> Sampler:
        self._probe()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._probe()

    def _at(self, name: str, moment: float) -> float | None:
        before = after = None
        for t, cpu, _ in self.samples:
            if name not in cpu:
                continue
            if t <= moment:
                before = (t, cpu[name])
            else:
                after = (t, cpu[name])
                break
        if before is None or after is None:
            return (before or after or (None, None))[1]
        t0, v0 = before
        t1, v1 = after
        return v0 + (v1 - v0) * (moment - t0) / (t1 - t0) if t1 > t0 else v0

    def cpu_percent(self, name: str, start: float, end: float) -> float | None:
        if end <= start:
            return None
        a, b = self._at(name, start), self._at(name, end)
        if a is None or b is None:
            return None
        return round(100 * (b - a) / (end - start), 1)

    def peak_rss_kb(self) -> int:
        return max((rss for _, _, rss in self.samples), default=0)

    def resources_at(self, moment: float) -> tuple[int, int | None]:
        """The server's RSS (kB) and open descriptors at the last sample before ``moment``."""
        index = 0
        for i, (t, _cpu, _rss) in enumerate(self.samples):
            if t > moment:
                break
            index = i
        fds = self.fds[index] if self.fds else None
        return self.samples[index][2], fds


def open_fds(pid: int | list[int]) -> int:
    if isinstance(pid, list):
        return sum(open_fds(one) for one in pid)
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def established_inodes(port: int) -> set[int]:
    """Inodes of ESTABLISHED TCP sockets whose local port is ``port`` (the server side)."""
    inodes = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(name) as file:
            next(file)
            for line in file:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(int(inode))
    return inodes


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes
