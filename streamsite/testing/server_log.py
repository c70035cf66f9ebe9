"""Fail a test whose live server logged an error or a traceback it did not expect.

Issue #13: "the log stays clean". Every server process a test starts (``LiveServer``, the
fake upstream, a task worker) registers its log here (``watch``). After each test the
root conftest calls ``check_watched()``: what every watched log gained since the last check
is split into records, and a record that reads as a failure (an ERROR or CRITICAL line, a
traceback, uvicorn's "Exception in ASGI application", an asyncio task whose exception was
never retrieved, ...) fails the test, with the offending records, unless the test declared
it: ``server.expect_log(pattern)`` for one server, or ``@pytest.mark.expect_log(pattern)``
for every server of the test. Servers shared by a session are checked per test by offset,
so each test answers for what was logged while it ran (a record written after a test ended
is reported by the next check, which says since when it looked).
"""

from __future__ import annotations

import re
from pathlib import Path

#: Text that means a server failed. A client's mistake is at most a WARNING.
FAILURE = re.compile(
    r"Traceback \(most recent call last\)|\bERROR\b|\bCRITICAL\b|Exception in ASGI application"
    r"|Exception inside application|Task exception was never retrieved|Internal Server Error"
    r"|Exception ignored in|Task was destroyed but it is pending"
)
#: Failures that are not: uvicorn answers a WebSocket handshake still in flight when the
#: server shuts down with a 500 and this INFO line (``shutdown()`` of its protocol), which
#: any restart under load meets. A handshake our application failed logs "Exception in
#: ASGI application" with a traceback as well, which is still caught.
NOT_FAILURES = (re.compile(r"^INFO:\s+connection rejected \(500 Internal Server Error\)$"),)
#: A line that starts a log record: ours and uvicorn's (``LEVEL name:`` / ``LEVEL:``),
#: daphne's (a timestamp first), an access line. Anything else continues the record above
#: it (a traceback's lines, Django's unformatted "Internal Server Error: ..." included).
RECORD_START = re.compile(
    r"^(?:(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)[: ]|\d{4}-\d\d-\d\d[ T]|\S+:\d+ - )"
)
MAX_REPORT_CHARS = 6000


def records(text: str) -> list[str]:
    """Split log text into records: a record's first line and its continuation lines."""
    found: list[list[str]] = []
    for line in text.splitlines():
        if not found or RECORD_START.match(line):
            found.append([line])
        else:
            found[-1].append(line)
    return ["\n".join(lines) for lines in found]


class LogWatch:
    """One server's log, read by offset: what it gained since the last ``failures()``."""

    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = Path(log_path)
        self.offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.expected: list[re.Pattern] = []

    def expect(self, pattern: str) -> None:
        """Allow records matching ``pattern`` (a regular expression) until the next check."""
        self.expected.append(re.compile(pattern))

    def failures(self, also_expected: list[re.Pattern] = ()) -> list[str]:
        """The unexpected failure records logged since the last call; resets expectations."""
        with self.log_path.open("rb") as log:
            log.seek(self.offset)
            text = log.read()
        self.offset += len(text)
        expected = [*NOT_FAILURES, *self.expected, *also_expected]
        self.expected = []
        return [
            record
            for record in records(text.decode(errors="replace"))
            if FAILURE.search(record) and not any(p.search(record) for p in expected)
        ]


_WATCHED: list[LogWatch] = []


def watch(name: str, log_path: Path) -> LogWatch:
    """Register a server's log: ``check_watched()`` reads it from now on."""
    log_watch = LogWatch(name, log_path)
    _WATCHED.append(log_watch)
    return log_watch


def check_watched(expected_patterns: list[str] = ()) -> str:
    """Read every watched log; return a report of unexpected failures ('' when clean).

    ``expected_patterns`` are allowed in every log (a test's ``expect_log`` markers).
    """
    also = [re.compile(pattern) for pattern in expected_patterns]
    sections = []
    for log_watch in _WATCHED:
        if not log_watch.log_path.exists():
            continue
        if found := log_watch.failures(also):
            body = "\n".join(found)
            if len(body) > MAX_REPORT_CHARS:
                body = body[:MAX_REPORT_CHARS] + "\n[...]"
            sections.append(f"--- {log_watch.name} ({log_watch.log_path}) ---\n{body}")
    return "\n".join(sections)
