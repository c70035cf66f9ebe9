"""CSV exports: flattened objects, one header, rows counted (not lines), formulas defused."""

import csv
import io

from streamsite.streaming.csv_chunks import cell, csv_chunks, flatten


async def rows_of(items):
    for item in items:
        yield item


async def encoded(items, columns, per_chunk=2):
    return [
        chunk async for chunk in csv_chunks(rows_of(items), dict, columns, rows_per_chunk=per_chunk)
    ]


def test_nested_objects_become_prefixed_columns():
    assert flatten({"id": 1, "author": {"id": 2, "username": "bo"}}) == {
        "id": 1,
        "author_id": 2,
        "author_username": "bo",
    }


def test_cells_a_spreadsheet_would_run_as_formulas_are_written_as_text():
    for text in ('=HYPERLINK("http://x")', "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"):
        assert cell(text) == "'" + text
    assert cell("plain = fine") == "plain = fine"
    assert (cell(None), cell(True), cell(False), cell(7)) == ("", "true", "false", "7")


async def test_one_header_then_rows_counted_even_with_newlines_in_fields():
    items = [
        {"id": 1, "body": "two\nlines"},
        {"id": 2, "body": 'a "quote", and a comma'},
        {"id": 3},
    ]
    chunks = await encoded(items, ["id", "body"])
    assert [chunk.rows for chunk in chunks] == [2, 1]
    text = b"".join(chunks).decode()
    assert list(csv.reader(io.StringIO(text))) == [
        ["id", "body"],
        ["1", "two\nlines"],
        ["2", 'a "quote", and a comma'],
        ["3", ""],
    ]


async def test_no_rows_is_the_header_alone():
    chunks = await encoded([], ["id"])
    assert [(bytes(chunk), chunk.rows) for chunk in chunks] == [(b"id\r\n", 0)]
