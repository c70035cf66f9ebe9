"""Log an outage of a shared service once: one warning when it fails, one when it is back.

When Redis restarts, every socket, stream and publish of a busy process fails at once;
a warning with a traceback for each buried the log under hundreds of identical blocks for
a two-second outage. Code that talks to the channel layer or Redis reports its failures
here instead: the first one is logged (one line, no traceback), the rest are counted, and
the first success after them logs how long it lasted and what failed how often.

Only errors that mean "the service is unreachable" are treated so; anything else is a bug
and is logged with its traceback by the caller (``is_connection_error``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

#: A failure this soon after the last one keeps the outage open: a pool's stale
#: connections fail one after another after a restart, and each success in between would
#: otherwise log "back" and the next failure "failing" again.
SETTLE_SECONDS = 1.0


#: What uvloop's ``RuntimeError`` says for a write to a connection already closed.
UVLOOP_CLOSED_TRANSPORT = "the handler is closed"


def is_connection_error(error: BaseException) -> bool:
    """Whether ``error`` means the service could not be reached (not a bug of ours).

    Under uvloop (``serve``), a write to a connection the server has just closed raises
    ``RuntimeError("unable to perform operation on <TCPTransport closed=True ...>; the
    handler is closed")`` where asyncio's own loop raises no error (uvloop issue #506,
    open): redis-py meets it when Redis restarts while a connection is being set up, and
    passes it on as it is. It is the same outage.
    """
    if isinstance(error, RedisConnectionError | RedisTimeoutError | OSError | TimeoutError):
        return True
    return isinstance(error, RuntimeError) and UVLOOP_CLOSED_TRANSPORT in str(error)


class Outage:
    """One service's health as this process sees it; safe to use from any thread."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._last_failure = 0.0
        self._failures: Counter[str] = Counter()

    def reset(self) -> None:
        """Forget any outage (for tests)."""
        with self._lock:
            self._down_since = None
            self._failures = Counter()

    @property
    def down(self) -> bool:
        """Whether a failure has been reported and no success since."""
        return self._down_since is not None

    def failed(self, what: str, error: BaseException) -> None:
        """Count a failure of ``what``; log it only if it is the first of an outage."""
        now = time.monotonic()
        with self._lock:
            first = self._down_since is None
            if first:
                self._down_since = now
            self._last_failure = now
            self._failures[what] += 1
        logger.debug("%s: %s failed: %r", self.service, what, error)
        if first:
            logger.warning(
                "%s is unreachable (%s: %s, in %s); failures are counted until it is back",
                self.service,
                type(error).__name__,
                error,
                what,
            )

    def succeeded(self) -> None:
        """Note a success; after an outage, log that the service is back, with counts."""
        if self._down_since is None:  # the hot path: no lock
            return
        now = time.monotonic()
        with self._lock:
            if self._down_since is None or now - self._last_failure < SETTLE_SECONDS:
                return
            seconds = now - self._down_since
            failures, self._failures = self._failures, Counter()
            self._down_since = None
        summary = ", ".join(f"{what}: {count}" for what, count in failures.most_common())
        logger.warning(
            "%s is back after %.1f s; %d failures meanwhile (%s)",
            self.service,
            seconds,
            failures.total(),
            summary,
        )


def report_failure(outage: Outage, what: str, error: BaseException, log: logging.Logger) -> None:
    """Count ``error`` in ``outage`` if the service is unreachable; else it is a bug: log
    it on ``log`` with its traceback."""
    if is_connection_error(error):
        outage.failed(what, error)
    else:
        log.warning("%s failed", what, exc_info=error)


#: The channel layer (hubs' receives, heartbeats and memberships; publishes).
CHANNEL_LAYER = Outage("the channel layer")
#: The Redis that holds shared state besides the layer (presence, rate limits).
SHARED_REDIS = Outage("Redis (presence, rate limits, assistant viewers)")
