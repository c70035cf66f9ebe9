"""A user's notifications as NDJSON lines: the streamed download and the export job."""

from notifications import selectors
from streamsite.streaming.csv_chunks import csv_chunks
from streamsite.streaming.ndjson import ndjson_chunks

#: The columns of the CSV export (``export_object``'s fields).
CSV_COLUMNS = ("id", "title", "body", "url", "level", "created_at", "read", "read_at")


def export_object(row: dict) -> dict:
    """One export line: the event payload plus when it was read (if known)."""
    read_at = row["read_at"]
    return {
        "id": row["id"],
        "title": row["title"],
        "body": row["body"],
        "url": row["url"],
        "level": row["level"],
        "created_at": row["created_at"].isoformat(),
        "read": bool(row["read"]),
        "read_at": read_at.isoformat() if read_at else None,
    }


def export_lines(
    user_id: int, *, rows_per_chunk: int = 500, up_to: int | None = None, as_csv: bool = False
):
    """Yield the user's notifications as NDJSON (or CSV), ``rows_per_chunk`` rows at a
    time (with ``up_to``, those with an id up to it, from ``export_bounds``).

    Consume it under ``contextlib.aclosing``.
    """
    rows = selectors.notifications_for_export(user_id, up_to=up_to)
    if as_csv:
        return csv_chunks(rows, export_object, CSV_COLUMNS, rows_per_chunk=rows_per_chunk)
    return ndjson_chunks(rows, export_object, rows_per_chunk=rows_per_chunk)


def export_bounds(user_id: int) -> tuple[int, int]:
    """Where an export of the feed as it is now ends (an id) and how many lines it has.

    Notifications that arrive while it runs (its own "ready" one) are not in it, so its
    count and its lines agree.
    """
    up_to = selectors.latest_notification_id(user_id)
    return up_to, selectors.feed_size(user_id, up_to=up_to)
