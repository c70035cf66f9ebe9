"""What uvicorn logs about clients' sockets: nothing a client can flood, nothing said twice.

uvicorn's sans-I/O WebSocket protocol (``manage.py serve``) answers a text frame that is not
valid UTF-8 by closing the socket with 1007, as RFC 6455 says, but first logs
``"Invalid UTF-8 sequence received from client."`` with ``logger.exception``: an ERROR and a
traceback for every such frame, so any client could flood the log (the choice was made in
uvicorn's PR #2540). The handling is right; only the record is wrong. ``ClientFaultFilter``,
on uvicorn's ``uvicorn.error`` logger, turns those records into one WARNING line without
the traceback, at most once per ``interval`` seconds, with the count of those it held back.

Every socket also made two or three INFO lines there: uvicorn's own ``"WebSocket /path"
[accepted]`` (its WebSocket access line goes to the error logger "for historical
reasons", and ``--no-access-log`` does not turn it off: uvicorn PR #2888), then the
``websockets`` library's ``connection open`` and ``connection closed`` (uvicorn hands it
the same logger). The application already logs each socket's opening and closing, with
its request id, user, close code and duration (``connection_event``), so these said it
again: 5-12 % of the event loop's samples while 10,000 sockets joined one room
(docs/benchmarks.md, "One big room"). ``SocketLineFilter`` drops exactly those three;
a refused handshake's ``403`` line and everything else pass.
"""

from __future__ import annotations

import logging
import threading
import time

#: What uvicorn logs, word for word, for a text frame that is not UTF-8.
INVALID_UTF8_MESSAGE = "Invalid UTF-8 sequence received from client."
#: At most one line about such frames per this many seconds.
REPORT_INTERVAL_SECONDS = 60.0


class ClientFaultFilter(logging.Filter):
    """Rewrite uvicorn's traceback for a client's invalid UTF-8 into a rate-limited line."""

    def __init__(self, interval: float = REPORT_INTERVAL_SECONDS, clock=time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()  # logging may be called from any thread
        self._next_report = float("-inf")
        self._held_back = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != INVALID_UTF8_MESSAGE:
            return True
        with self._lock:
            now = self.clock()
            if now < self._next_report:
                self._held_back += 1
                return False
            held_back, self._held_back = self._held_back, 0
            self._next_report = now + self.interval
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info = record.exc_text = None
        record.stack_info = None
        record.msg = (
            "a client sent a text frame that is not UTF-8; its socket was closed with 1007"
            f" ({held_back} more since the last report; at most one report per"
            f" {self.interval:g} s)"
        )
        record.args = ()
        return True


#: uvicorn's and ``websockets``' INFO lines for every socket, word for word (format strings).
SOCKET_LINES = frozenset({'%s - "WebSocket %s" [accepted]', "connection open", "connection closed"})


class SocketLineFilter(logging.Filter):
    """Drop the per-socket INFO lines that ``connection_event`` already says (see above)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.INFO and record.msg in SOCKET_LINES)


def install_server_log_filters() -> None:
    """Put ``ClientFaultFilter`` and ``SocketLineFilter`` on uvicorn's error logger, once
    each (idempotent)."""
    logger = logging.getLogger("uvicorn.error")
    for filter_class in (ClientFaultFilter, SocketLineFilter):
        if not any(isinstance(existing, filter_class) for existing in logger.filters):
            logger.addFilter(filter_class())
