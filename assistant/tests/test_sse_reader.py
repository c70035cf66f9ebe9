"""The browser's SSE parser (assistant/static/assistant/sse-reader.js), run in Chromium.

Hypothesis writes valid event streams (multi-byte text, multi-line data, CRLF, LF and lone
CR line endings, comments, ids, ``[DONE]`` with and without the space), cuts their bytes
at offsets of its choosing, and feeds the pieces to the JavaScript parser: it must yield
the same events as for the whole body at once, and as the reference parser below, which
follows the WHATWG "event stream interpretation" line by line. One page serves every
example: the module is loaded from disk through a routed origin, no server needed.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.browser

MODULE = Path(__file__).resolve().parents[1] / "static" / "assistant" / "sse-reader.js"
ORIGIN = "http://sse-reader.test"

# Runs in the page: parse the chunks with push()/end(), the same bytes in one piece, and
# the chunks again through readEvents() over a real Response body.
PARSE_JS = """
async (chunkLists) => {
  const { SSEParser, readEvents } = window.sseReader;
  const outcome = (parser, events) => ({ events, finished: parser.finished, retry: parser.retry });
  const pushed = (chunks) => {
    const parser = new SSEParser();
    const events = [];
    for (const chunk of chunks) events.push(...parser.push(Uint8Array.from(chunk)));
    events.push(...parser.end());
    return outcome(parser, events);
  };
  const streamed = async (chunks) => {
    const parser = new SSEParser();
    const body = new ReadableStream({
      start(controller) {
        for (const chunk of chunks) controller.enqueue(Uint8Array.from(chunk));
        controller.close();
      },
    });
    const events = [];
    for await (const event of readEvents(new Response(body), { parser })) events.push(event);
    return outcome(parser, events);
  };
  const results = [];
  for (const chunks of chunkLists) {
    const whole = pushed([chunks.flat()]);
    results.push({ split: pushed(chunks), whole, read: await streamed(chunks) });
  }
  return results;
}
"""


# The reference -----------------------------------------------------------------------------


def reference_parse(body: bytes) -> dict:
    """Parse a whole body per the WHATWG spec (plus ``[DONE]``), the plain way."""
    text = body.decode("utf-8", errors="replace").removeprefix("\ufeff")
    # The last piece is a line the stream ended in the middle of (or ""): never processed.
    lines = re.split(r"\r\n|\r|\n", text)[:-1]
    events: list[dict] = []
    data, event_type, last_id, retry, finished = "", "", "", None, False
    for line in lines:
        if line == "":
            if data == "":
                event_type = ""
                continue
            data = data.removesuffix("\n")
            kind = event_type or "message"
            event_type = ""
            if kind == "message" and data == "[DONE]":
                finished = True
                break
            events.append({"type": kind, "data": data, "id": last_id})
            data = ""
            continue
        if line.startswith(":"):
            continue
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "event":
            event_type = value
        elif field == "data":
            data += value + "\n"
        elif field == "id":
            if "\x00" not in value:
                last_id = value
        elif field == "retry" and value and all("0" <= c <= "9" for c in value):
            retry = int(value)
    return {"events": events, "finished": finished, "retry": retry}


def test_the_reference_parser_reads_the_spec_examples():
    body = (
        b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\n"
        b"data:  third event\n\ndata\n\ndata\ndata\n\ndata:\n"
    )
    assert reference_parse(body)["events"] == [
        {"type": "message", "data": "first event", "id": "1"},
        {"type": "message", "data": "second event", "id": ""},
        {"type": "message", "data": " third event", "id": ""},
        {"type": "message", "data": "", "id": ""},
        {"type": "message", "data": "\n", "id": ""},
    ]


# Streams -----------------------------------------------------------------------------------

ENDINGS = st.sampled_from(["\n", "\r\n", "\r"])
# Any text that fits on a line, with plenty of multi-byte characters (2, 3 and 4 bytes).
line_text = st.text(
    alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\r\n")
    | st.sampled_from(["é", "ß", "€", "中", "😀", "🏽", ":", " ", "\x00"]),
    max_size=12,
)


@st.composite
def field_line(draw, name: str, value: str | None = None) -> str:
    value = draw(line_text) if value is None else value
    return f"{name}:{draw(st.sampled_from([' ', '']))}{value}"


@st.composite
def event_lines(draw) -> list[str]:
    """The lines of one event (without the blank line that ends it)."""
    lines = []
    if draw(st.booleans()):
        lines.append(
            draw(field_line("event", draw(st.sampled_from(["delta", "done", "error"]) | line_text)))
        )
    if draw(st.booleans()):
        lines.append(draw(field_line("id")))
    for _ in range(draw(st.integers(0, 3))):
        lines.append(draw(field_line("data")))
    extras = st.sampled_from(
        [": keepalive", ":", "data", "id", "retry: 3000", "retry: 1x", "foo: bar"]
    )
    for _ in range(draw(st.integers(0, 2))):
        lines.insert(draw(st.integers(0, len(lines))), draw(extras))
    return lines


@st.composite
def streams(draw) -> bytes:
    """A body: events, maybe [DONE] (and bytes after it), maybe an unfinished last event."""
    lines: list[str] = []
    for _ in range(draw(st.integers(0, 6))):
        lines.extend(draw(event_lines()))
        lines.append("")
    if draw(st.booleans()):
        lines.extend([draw(st.sampled_from(["data: [DONE]", "data:[DONE]"])), ""])
        if draw(st.booleans()):
            lines.extend(["data: after the end", ""])
    if draw(st.booleans()):
        lines.extend(draw(event_lines()))  # the stream stops mid-event
    text = "".join(line + draw(ENDINGS) for line in lines)
    if draw(st.booleans()):
        text += draw(line_text)  # ... or mid-line
    bom = "\ufeff" if draw(st.booleans()) else ""
    return (bom + text).encode()


def split_at(body: bytes, offsets: list[int]) -> list[bytes]:
    cuts = [0, *sorted(offsets), len(body)]
    return [body[a:b] for a, b in itertools.pairwise(cuts)]


@st.composite
def split_streams(draw) -> list[bytes]:
    body = draw(streams())
    offsets = draw(st.lists(st.integers(0, len(body)), max_size=12))
    if draw(st.booleans()):
        offsets += range(len(body))  # byte by byte
    return split_at(body, offsets)


# The page ----------------------------------------------------------------------------------


@pytest.fixture
async def reader_page(browser):
    """A page with sse-reader.js imported as ``window.sseReader`` (served from disk)."""
    context = await browser.new_context()

    async def serve(route):
        if route.request.url.endswith("/sse-reader.js"):
            await route.fulfill(body=MODULE.read_text(), content_type="text/javascript")
        else:
            await route.fulfill(body="<!doctype html><title>sse</title>", content_type="text/html")

    await context.route(f"{ORIGIN}/**", serve)
    page = await context.new_page()
    await page.goto(f"{ORIGIN}/")
    await page.evaluate("async () => { window.sseReader = await import('/sse-reader.js'); }")
    yield page
    await context.close()


async def parse_in_page(page, chunk_lists: list[list[bytes]]) -> list[dict]:
    return await page.evaluate(
        PARSE_JS, [[list(chunk) for chunk in chunks] for chunks in chunk_lists]
    )


# Tests -------------------------------------------------------------------------------------


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(chunks=split_streams())
async def test_split_anywhere_the_parser_yields_the_events_of_the_whole_body(reader_page, chunks):
    (result,) = await parse_in_page(reader_page, [chunks])
    expected = reference_parse(b"".join(chunks))
    assert result["whole"] == expected
    assert result["split"] == expected
    assert result["read"] == expected


CASES = [
    # (body, events as (type, data, id), ended with [DONE])
    (
        b'event: turn\nid: 12:0\ndata: {"a": 1}\n\nevent: delta\nid: 12:5\ndata: {"t": "Hello"}\n\n'
        b"data: [DONE]\n\n",
        [("turn", '{"a": 1}', "12:0"), ("delta", '{"t": "Hello"}', "12:5")],
        True,
    ),
    (b"data:[DONE]\n\ndata: never\n\n", [], True),
    (b"data:  [DONE]\n\n", [("message", " [DONE]", "")], False),  # one space only is eaten
    (b"event: done\ndata: [DONE]\n\n", [("done", "[DONE]", "")], False),  # only a message ends
    (b"event: error\ndata: upstream failed\n\n", [("error", "upstream failed", "")], False),
    (b"data: a\r\ndata: b\rdata: c\n\r\n", [("message", "a\nb\nc", "")], False),
    (b": keepalive\n\nretry: 2000\n\ndata: x\n\n", [("message", "x", "")], False),
    (
        b"id: 1\ndata: x\n\nid: 2\x00\ndata: y\n\ndata: z\n\n",  # an id with NUL is ignored
        [("message", "x", "1"), ("message", "y", "1"), ("message", "z", "1")],
        False,
    ),
    (b"\xef\xbb\xbfdata: bom\n\n", [("message", "bom", "")], False),
    ("data: é😀中\n\n".encode(), [("message", "é😀中", "")], False),
    (b"data: unfinished\n", [], False),  # the stream ended mid-event: dropped
    (b"data: unfinished", [], False),
]


async def test_known_bodies_split_byte_by_byte_give_the_expected_events(reader_page):
    chunk_lists = [[body[i : i + 1] for i in range(len(body))] for body, _, _ in CASES]
    results = await parse_in_page(reader_page, chunk_lists)
    for (body, events, finished), result in zip(CASES, results, strict=True):
        expected = {
            "events": [{"type": t, "data": d, "id": i} for t, d, i in events],
            "finished": finished,
        }
        for how in ("split", "whole", "read"):
            got = result[how]
            assert {"events": got["events"], "finished": got["finished"]} == expected, (body, how)
        assert reference_parse(body)["events"] == expected["events"], body


async def test_a_cr_and_its_lf_in_two_chunks_end_one_line(reader_page):
    (result,) = await parse_in_page(
        reader_page, [[b"data: a\r", b"\n", b"\r", b"\ndata: b\r\n\r\n"]]
    )
    assert result["split"]["events"] == [
        {"type": "message", "data": "a", "id": ""},
        {"type": "message", "data": "b", "id": ""},
    ]
    assert result["split"]["retry"] is None


async def test_the_retry_field_is_kept_when_it_is_digits_only(reader_page):
    (result,) = await parse_in_page(reader_page, [[b"retry: 1500\nretry: 2x\n\n"]])
    assert result["split"] == {"events": [], "finished": False, "retry": 1500}
