"""The test rig's log watch (streamsite.testing.server_log): what fails a live-server test."""

from streamsite.testing.server_log import LogWatch, records

TRACEBACK = """ERROR chat.consumers: chat socket could not join room
Traceback (most recent call last):
  File "x.py", line 1, in join
    raise ClientDisconnected
ClientDisconnected
"""


def test_a_traceback_belongs_to_the_record_above_it():
    log = "INFO streamsite: up\n" + TRACEBACK + "WARNING: a client sent junk\n"
    found = records(log)
    assert len(found) == 3
    assert found[1].startswith("ERROR chat.consumers") and found[1].endswith("ClientDisconnected")


def test_new_errors_fail_once_warnings_never(tmp_path):
    path = tmp_path / "server.log"
    path.write_text("ERROR: logged before the watch began\n")
    watch = LogWatch("daphne server", path)
    assert watch.failures() == []
    with path.open("a") as log:
        log.write("WARNING: a client's mistake\n" + TRACEBACK)
        log.write("ERROR:    Exception in ASGI application\n")
        log.write("Task exception was never retrieved\nfuture: <Task finished>\n")
    found = watch.failures()
    assert [record.splitlines()[0] for record in found] == [
        "ERROR chat.consumers: chat socket could not join room",
        "ERROR:    Exception in ASGI application",
    ]  # the unretrieved task's lines continue the ASGI record above them
    assert "Task exception was never retrieved" in found[1]
    assert watch.failures() == []  # read by offset: each record is reported once


def test_a_declared_record_is_allowed_for_one_check_only(tmp_path):
    path = tmp_path / "server.log"
    path.write_text("")
    watch = LogWatch("uvicorn server", path)
    watch.expect(r"could not join room")
    path.write_text(TRACEBACK)
    assert watch.failures() == []
    with path.open("a") as log:
        log.write(TRACEBACK)
    assert len(watch.failures()) == 1  # expectations last for one test


def test_uvicorns_refusal_of_a_handshake_at_shutdown_is_no_failure(tmp_path):
    """uvicorn answers a WebSocket handshake in flight at shutdown with a 500 and an INFO
    line: a restart under load meets it. Django's own 500 still fails."""
    path = tmp_path / "server.log"
    path.write_text("")
    watch = LogWatch("uvicorn server", path)
    with path.open("a") as log:
        log.write("INFO:     connection rejected (500 Internal Server Error)\n")
        log.write("ERROR django.request: Internal Server Error: /chat/\n")
    assert [record.splitlines()[0] for record in watch.failures()] == [
        "ERROR django.request: Internal Server Error: /chat/"
    ]
