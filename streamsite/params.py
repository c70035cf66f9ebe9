"""Integers read from query parameters and headers: ids that can reach SQL.

A client controls these strings, so they are checked as text before ``int()`` runs:
``int()`` of more than 4,300 digits raises ``ValueError`` (Python's guard against slow
conversions), and an id that fits no bigint would fail in the database, not in the view.
"""

from __future__ import annotations

#: The largest id PostgreSQL's bigint holds; ids above it are not ids we issued.
MAX_ID = 2**63 - 1
_MAX_ID_DIGITS = len(str(MAX_ID))


def parse_id(raw: str) -> int:
    """Return ``raw`` as an id (an integer from 0 to ``MAX_ID``), or raise ``ValueError``.

    Only ASCII digits count (``"²"`` is a digit to ``str.isdigit``), and a
    string longer than the largest id (leading zeros included) is refused before it is
    converted.
    """
    if not (raw.isascii() and raw.isdigit()) or len(raw) > _MAX_ID_DIGITS:
        raise ValueError("not an id")
    value = int(raw)
    if value > MAX_ID:
        raise ValueError("not an id")
    return value
