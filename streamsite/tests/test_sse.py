"""SSE encoding: no value can break out of its field; multi-line data survives."""

import json

import pytest

from streamsite.streaming.sse import (
    KEEPALIVE,
    clean_field,
    encode_comment,
    encode_event,
    encode_json_event,
    encode_retry,
)


def parse(stream: bytes) -> list[dict]:  # an independent, whole-buffer parser
    """Parse events as a browser does (WHATWG SSE), enough to check what it would see."""
    events, fields, data = [], {}, []
    for line in stream.decode().replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line == "":
            if data or fields:
                events.append({**fields, "data": "\n".join(data)})
            fields, data = {}, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        else:
            fields[name] = value
    return events


@pytest.mark.parametrize("evil", ["a\nb", "a\rb", "a\r\nb", "a\x00b", "a\n\nevent: x\ndata: y"])
def test_event_and_id_fields_cannot_inject_lines(evil):
    encoded = encode_event("payload", event=evil, id=evil)
    (event,) = parse(encoded)
    assert "\n" not in event["event"] and "\r" not in event["event"]
    assert "\x00" not in event["id"]
    assert event["data"] == "payload"


def test_multi_line_data_arrives_intact():
    body = "first line\nsecond line\r\nthird\rfourth\n\nafter a blank"
    (event,) = parse(encode_event(body, event="notification", id=7))
    assert event["data"] == "first line\nsecond line\nthird\nfourth\n\nafter a blank"
    assert event["id"] == "7"


def test_data_cannot_start_a_new_event():
    encoded = encode_event("x\n\nevent: forged\nid: 999\ndata: gotcha")
    (event,) = parse(encoded)
    assert "event" not in event and "id" not in event
    assert event["data"] == "x\n\nevent: forged\nid: 999\ndata: gotcha"


def test_nul_in_data_is_replaced():
    (event,) = parse(encode_event("a\x00b"))
    assert event["data"] == "a\ufffdb"


def test_json_event_round_trips_user_text():
    payload = {"title": "line1\nline2\r\x00</script>", "body": "\u2028ok"}
    encoded = encode_json_event(payload, event="notification", id=42)
    (event,) = parse(encoded)
    assert (event["event"], event["id"]) == ("notification", "42")
    assert json.loads(event["data"]) == payload


def test_retry_keepalive_and_comment():
    assert encode_retry(2000) == b"retry: 2000\n\n"
    assert KEEPALIVE == b": keepalive\n\n"
    assert parse(encode_comment("hi\n\ndata: x")) == []
    assert clean_field("a\r\nb\x00") == "ab"
