"""Count ERROR and worse log records, for the dashboard's "errors" and for alerting."""

import logging

from streamsite.observability.metrics import log_errors


class ErrorCountHandler(logging.Handler):
    """Count records at ERROR or above; write nothing (level WARNING, on the root logger).

    A handler on the root logger switches off Python's last resort (``logging.lastResort``
    prints WARNING+ records that no handler takes, as bare messages): so a record that
    found no other handler on its way up is handed to it here, as before. streamsite's own
    loggers do not propagate: settings.LOGGING gives them this handler too.
    """

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            log_errors.inc()
        if not self._handled_elsewhere(record) and logging.lastResort is not None:
            logging.lastResort.handle(record)

    def _handled_elsewhere(self, record: logging.LogRecord) -> bool:
        logger = logging.getLogger(record.name)
        while logger is not None:
            if any(handler is not self for handler in logger.handlers):
                return True
            if not logger.propagate:
                return False
            logger = logger.parent
        return False
