"""Count ERROR and worse log records, for the dashboard's "errors" and for alerting."""

import logging

from streamsite.observability.metrics import log_errors


class ErrorCountHandler(logging.Handler):
    """A handler that formats nothing and writes nothing: it only counts (level ERROR).

    On the root logger, it sees records that propagate; streamsite's own loggers do not
    propagate, so settings.LOGGING gives them this handler too.
    """

    def emit(self, record: logging.LogRecord) -> None:
        log_errors.inc()
