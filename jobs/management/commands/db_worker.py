"""``manage.py db_worker``: django-tasks-db's worker, with a shutdown that loses no job.

The library's worker exits from its signal handler (``sys.exit``) whenever it is not
running a task, and that includes the transaction in which it claims the next one. A
SIGTERM (a deploy, ``make run``'s Ctrl-C, the test rig) arriving during that transaction's
COMMIT raised ``SystemExit`` inside ``commit()``; Django then failed to reset autocommit
on the busy connection, the process logged a traceback and exited 1, and the COMMIT went
through on the server: the job stayed RUNNING under a worker that no longer existed, and
nothing ever picked it up again (django-tasks-db issue #61, open for 0.13.0; our CI met it
in ``jobs/tests/test_tasks.py``).

Here a signal that arrives inside a transaction only stops the loop: the transaction
ends, a task it claimed runs to its end (as one already running does), and the worker
exits 0. Everything else is the library's (same options, same second-signal force stop).
The command overrides the library's because ``jobs`` comes before ``django_tasks_db`` in
``INSTALLED_APPS``.
"""

from __future__ import annotations

import logging
import os
import signal
from types import FrameType

from django.db import connections
from django.utils.autoreload import DJANGO_AUTORELOAD_ENV, run_with_reloader
from django_tasks_db.management.commands import db_worker as library

logger = logging.getLogger("django_tasks_db")


def in_transaction() -> bool:
    """Whether this thread holds a database transaction open (``atomic``)."""
    return any(connection.in_atomic_block for connection in connections.all(initialized_only=True))


class Worker(library.Worker):
    """The library's worker, stopping after the transaction a signal interrupts."""

    def shutdown(self, signum: int, frame: FrameType | None) -> None:
        if self.running and not self.running_task and in_transaction():
            logger.warning(
                "Received %s - shutting down after the current claim... "
                "(press Ctrl+C again to force)",
                signal.strsignal(signum),
            )
            self.running = False  # the loop ends once the transaction has
            return
        super().shutdown(signum, frame)


class Command(library.Command):
    """The library's command (its options and logging), running ``Worker`` above."""

    def handle(self, *, verbosity: int, reload: bool, batch: bool, **options) -> None:
        self.configure_logging(verbosity)
        if reload and batch:
            logger.warning(
                "Warning: --reload and --batch cannot be specified together. Disabling autoreload."
            )
            reload = False
        queue_names = options["queue_name"].split(",")
        exclude = options["exclude_queues"]
        excluded_queue_names = exclude.split(",") if exclude else []
        if excluded_queue_names and "*" not in queue_names:
            raise library.CommandError("--exclude-queues can only be used with --queue-name=*")
        worker = Worker(
            queue_names=queue_names,
            interval=options["interval"],
            batch=batch,
            backend_name=options["backend_name"],
            startup_delay=options["startup_delay"],
            max_tasks=options["max_tasks"],
            worker_id=options["worker_id"],
            excluded_queue_names=excluded_queue_names,
        )
        if reload:
            if os.environ.get(DJANGO_AUTORELOAD_ENV) == "true":
                worker.configure_signals()  # only the reloader's child handles signals
            run_with_reloader(worker.run)
        else:
            worker.configure_signals()
            worker.run()
