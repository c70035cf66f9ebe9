"""``manage.py db_worker`` (jobs' own): a signal during the claim's transaction loses no job."""

import signal

import pytest
from django.core.management import get_commands
from django.db import transaction

from jobs.management.commands.db_worker import Worker

pytestmark = pytest.mark.django_db(transaction=True)


def worker() -> Worker:
    return Worker(
        queue_names=["default"],
        interval=0.05,
        batch=False,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id="test-worker",
        excluded_queue_names=[],
    )


def test_the_project_runs_its_own_worker_command():
    assert get_commands()["db_worker"] == "jobs"


def test_a_signal_inside_a_transaction_lets_it_finish_then_stops_the_loop():
    """The library exited from the signal handler here, inside COMMIT (issue #61)."""
    stopping = worker()
    with transaction.atomic():
        stopping.shutdown(signal.SIGTERM, None)  # returns: no SystemExit mid-transaction
        assert stopping.running is False
    assert transaction.get_connection().in_atomic_block is False


def test_a_signal_outside_a_transaction_exits_at_once_as_the_library_does():
    idle = worker()
    with pytest.raises(SystemExit) as exited:
        idle.shutdown(signal.SIGTERM, None)
    assert exited.value.code == 0


def test_a_second_signal_forces_the_stop():
    stopping = worker()
    with transaction.atomic():
        stopping.shutdown(signal.SIGTERM, None)
        with pytest.raises(SystemExit) as exited:
            stopping.shutdown(signal.SIGTERM, None)
    assert exited.value.code == 1
    stopping.reset_signals()
