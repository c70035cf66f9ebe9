"""Encode rows as NDJSON (one JSON object per line), in chunks, for streamed exports."""

import json
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing

_to_json = json.JSONEncoder(separators=(",", ":")).encode


async def ndjson_chunks(
    rows: AsyncIterator, to_object: Callable[..., dict], *, rows_per_chunk: int = 500
) -> AsyncIterator[bytes]:
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
                lines.append("")
                yield "\n".join(lines).encode()
                lines = []
    if lines:
        lines.append("")
        yield "\n".join(lines).encode()
