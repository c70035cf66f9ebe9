"""Encode rows as CSV, in chunks, for exports people open in a spreadsheet.

The same objects as the NDJSON exports (``streamsite.streaming.ndjson``), flattened: a
nested object's fields become ``<name>_<field>`` columns; ``None`` is an empty cell and
booleans are ``true``/``false``. A cell whose text a spreadsheet would run as a formula
(it starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return: user text can) is
written with a leading apostrophe, as OWASP's advice on CSV injection says.
"""

import csv
import io
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing

from streamsite.streaming.ndjson import Chunk

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def flatten(value: dict, prefix: str = "") -> dict:
    """``{"author": {"id": 1}}`` as ``{"author_id": 1}``."""
    flat = {}
    for name, item in value.items():
        if isinstance(item, dict):
            flat.update(flatten(item, f"{prefix}{name}_"))
        else:
            flat[f"{prefix}{name}"] = item
    return flat


def cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


async def csv_chunks(
    rows: AsyncIterator,
    to_object: Callable[..., dict],
    columns: Sequence[str],
    *,
    rows_per_chunk: int = 500,
) -> AsyncIterator[Chunk]:
    """Yield a header line, then ``rows`` as CSV, ``rows_per_chunk`` rows per chunk.

    Fields an object lacks are empty cells; ``rows`` is consumed under ``aclosing``.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    count = 0
    async with aclosing(rows):
        async for row in rows:
            flat = flatten(to_object(row))
            writer.writerow([cell(flat.get(column)) for column in columns])
            count += 1
            if count >= rows_per_chunk:
                yield Chunk.of(buffer.getvalue().encode(), count)
                buffer.seek(0)
                buffer.truncate()
                count = 0
    if count or buffer.tell():
        yield Chunk.of(buffer.getvalue().encode(), count)
