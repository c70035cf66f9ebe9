"""NDJSON export chunks: every row once, chunked, and the source closed on an early stop."""

import json

from streamsite.streaming.ndjson import ndjson_chunks


async def numbers(count: int, closed: list):
    try:
        for n in range(count):
            yield {"n": n, "text": "line\nbreak"}
    finally:
        closed.append(True)


async def test_rows_become_lines_in_chunks():
    closed: list = []
    chunks = [c async for c in ndjson_chunks(numbers(5, closed), dict, rows_per_chunk=2)]
    assert [chunk.count(b"\n") for chunk in chunks] == [2, 2, 1]
    lines = b"".join(chunks).decode().splitlines()
    assert [json.loads(line)["n"] for line in lines] == [0, 1, 2, 3, 4]
    assert closed == [True]


async def test_closing_early_closes_the_source():
    closed: list = []
    chunks = ndjson_chunks(numbers(10, closed), dict, rows_per_chunk=2)
    assert (await anext(chunks)).count(b"\n") == 2
    await chunks.aclose()
    assert closed == [True]


async def test_no_rows_no_chunks():
    assert [c async for c in ndjson_chunks(numbers(0, []), dict)] == []
