"""A room's history as NDJSON lines: the streamed download and the export job."""

from chat import selectors
from chat.events import MISSING_ANSWER
from chat.models import Message, Room
from streamsite.streaming.csv_chunks import csv_chunks
from streamsite.streaming.ndjson import ndjson_chunks

#: The columns of the CSV export (``export_row``'s fields, flattened).
CSV_COLUMNS = (
    "id", "client_id", "room", "author_id", "author_username", "body", "created_at",
    "edited_at", "deleted_at", "assistant", "status",
)  # fmt: skip


def export_row(room: Room, row: dict) -> dict:
    """One export line: the message as clients see it, plus when it was edited or deleted.

    A deleted message keeps its line (ids stay continuous) without a ``body``. The
    assistant's answer has ``"assistant": true``, its text so far as ``body`` and its
    ``status`` (``author`` is who asked).
    """
    line = {
        "id": row["id"],
        "client_id": str(row["client_id"]),
        "room": room.slug,
        "author": {"id": row["author_id"], "username": row["author__username"]},
        "body": row["body"],
        "created_at": row["created_at"].isoformat(),
        "edited_at": row["edited_at"].isoformat() if row["edited_at"] else None,
        "deleted_at": row["deleted_at"].isoformat() if row["deleted_at"] else None,
    }
    if row["assistant_answer_id"] is not None:
        line["assistant"] = True
        if row["deleted_at"] is None:
            state = row.get("answer_state") or MISSING_ANSWER
            line["body"], line["status"] = state["text"], state["status"]
    if row["deleted_at"] is not None:
        del line["body"]
    return line


def export_lines(
    room: Room, *, rows_per_chunk: int = 500, up_to: int | None = None, as_csv: bool = False
):
    """Yield the room's messages as NDJSON (or CSV), ``rows_per_chunk`` rows at a time
    (with ``up_to``, those with an id up to it, from ``export_bounds``)."""
    rows = selectors.messages_for_export(room.pk, up_to=up_to)

    def to_object(row):
        return export_row(room, row)

    if as_csv:
        return csv_chunks(rows, to_object, CSV_COLUMNS, rows_per_chunk=rows_per_chunk)
    return ndjson_chunks(rows, to_object, rows_per_chunk=rows_per_chunk)


def export_bounds(room_id: int) -> tuple[int, int]:
    """Where an export of the room as it is now ends (an id) and how many lines it has.

    Messages posted while it runs are not in it, so its count and its lines agree.
    """
    up_to = selectors.latest_message_id(room_id)
    return up_to, Message.objects.filter(room_id=room_id, id__lte=up_to).count()
