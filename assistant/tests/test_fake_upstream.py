"""The fake upstream's own promises that the provider's tests do not already show."""

from __future__ import annotations

import re
import threading
import time

import httpx
import pytest

from assistant.testing.openai_stream import openai_stream


def completions(upstream, **kwargs) -> httpx.Response:
    return httpx.post(f"{upstream.base_url}/chat/completions", json={}, timeout=10, **kwargs)


def test_with_no_script_it_gives_a_short_normal_answer(fake_upstream):
    response = completions(fake_upstream, headers={"Authorization": "Bearer sk-secret"})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.content == openai_stream(["Hello", " from", " the", " fake", " upstream", "."])
    [record] = fake_upstream.requests()
    assert record["auth"] is True
    assert "authorization" not in record["headers"]
    assert "sk-secret" not in str(record)
    assert record["completed"] is True
    assert record["disconnected"] is False


def test_scripts_answer_requests_in_order_and_a_stall_can_end(fake_upstream):
    fake_upstream.scripts(
        [
            {"status": 503, "body": "busy"},
            {"chunks": [{"utf8": "data: é\n\n"}, {"stall": 0.2}, {"data": "data: \xff\n\n"}]},
        ]
    )

    first, second = completions(fake_upstream), completions(fake_upstream)

    assert (first.status_code, first.text) == (503, "busy")
    assert second.content == "data: é\n\n".encode() + b"data: \xff\n\n"


def test_a_bad_script_is_refused_when_queued(fake_upstream):
    with pytest.raises(AssertionError, match="400"):
        fake_upstream.script(tokens=["a"], usage="sometimes")


def test_a_reset_ends_the_streams_in_flight(fake_upstream):
    fake_upstream.script(chunks=[{"data": "data: 1\n\n"}, {"stall": None}])
    responses = []
    client = threading.Thread(target=lambda: responses.append(completions(fake_upstream)))
    client.start()
    deadline = time.monotonic() + 5
    while not fake_upstream.requests() and time.monotonic() < deadline:
        time.sleep(0.02)

    fake_upstream.reset()
    client.join(timeout=5)

    assert not client.is_alive()
    assert responses[0].content == b"data: 1\n\n"


def test_wait_disconnected_fails_at_its_deadline(fake_upstream):
    with pytest.raises(AssertionError, match="no request"):
        fake_upstream.wait_disconnected(0, timeout=0.1)


def test_stamp_puts_each_tokens_send_time_in_its_text(fake_upstream):
    """A benchmark compares the stamps with its own time.monotonic() (one clock on Linux)."""
    fake_upstream.script(tokens=["a{t} ", "b{t} ", "c{t} "], token_delay=0.01, stamp="{t}")
    before = time.monotonic()

    response = completions(fake_upstream)

    after = time.monotonic()
    stamps = [float(s) for s in re.findall(r'"content": "[abc]([0-9.]+) "', response.text)]
    assert len(stamps) == 3
    assert before < stamps[0] < stamps[1] < stamps[2] < after
    assert stamps[2] - stamps[0] >= 0.02  # sent as paced, not all at once
    assert "{t}" not in response.text


def test_a_stamp_that_is_not_a_string_is_refused(fake_upstream):
    with pytest.raises(AssertionError, match="400"):
        fake_upstream.script(tokens=["a"], stamp=5)
