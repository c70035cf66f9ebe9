"""Ids read from query parameters and headers (``streamsite.params``)."""

import pytest

from streamsite.params import MAX_ID, parse_id


@pytest.mark.parametrize("raw", ["0", "7", "0042", str(MAX_ID)])
def test_ascii_digits_up_to_the_largest_bigint_are_ids(raw):
    assert parse_id(raw) == int(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "-1",
        "+1",
        " 1",
        "1.0",
        "1e3",
        "²",  # a digit to str.isdigit, not to int()
        str(MAX_ID + 1),
        "9" * 4000,  # int() would take it: refused before it reaches SQL
        "9" * 5000,  # int() would raise: refused before it is converted
        "0" * 5000 + "1",
    ],
)
def test_anything_else_is_a_value_error(raw):
    with pytest.raises(ValueError):
        parse_id(raw)
