"""Encode rows as NDJSON (one JSON object per line), in chunks, for streamed exports."""

import json
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing

_to_json = json.JSONEncoder(separators=(",", ":")).encode


class Chunk(bytes):
    """Encoded rows, and how many (a line count would miscount a CSV field's newlines)."""

    rows: int

    @classmethod
    def of(cls, data: bytes, rows: int) -> "Chunk":
        chunk = cls(data)
        chunk.rows = rows
        return chunk


async def ndjson_chunks(
    rows: AsyncIterator, to_object: Callable[..., dict], *, rows_per_chunk: int = 500
) -> AsyncIterator[Chunk]:
    """Yield ``rows`` as NDJSON bytes, ``rows_per_chunk`` lines per chunk.

    ``rows`` is consumed under ``aclosing``: a client that leaves mid-export closes the
    query behind it at once. Chunks, not lines: every chunk costs a trip through the
    server's send path.
    """
    lines: list[str] = []
    async with aclosing(rows):
        async for row in rows:
            lines.append(_to_json(to_object(row)))
            if len(lines) >= rows_per_chunk:
                yield _joined(lines)
                lines = []
    if lines:
        yield _joined(lines)


def _joined(lines: list[str]) -> Chunk:
    return Chunk.of(("\n".join(lines) + "\n").encode(), len(lines))
