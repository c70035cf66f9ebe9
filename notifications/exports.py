"""A user's notifications as NDJSON lines: the streamed download and the export job."""

from notifications import selectors
from streamsite.streaming.ndjson import ndjson_chunks


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


def export_lines(user_id: int, *, rows_per_chunk: int = 500):
    """Yield the user's notifications as NDJSON, ``rows_per_chunk`` lines at a time.

    Consume it under ``contextlib.aclosing``.
    """
    return ndjson_chunks(
        selectors.notifications_for_export(user_id), export_object, rows_per_chunk=rows_per_chunk
    )


def export_size(user_id: int) -> int:
    """How many lines ``export_lines`` yields for the user, as of now."""
    return selectors.feed_size(user_id)
