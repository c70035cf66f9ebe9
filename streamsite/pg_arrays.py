"""Integer lists sent to PostgreSQL as one array literal, built here, not by the driver.

Django's psycopg backend binds parameters on the client: a list of 1,000 ids went through
psycopg's list dumper element by element (a regular-expression search for quoting per
element) and cost 1.2 ms of Python per statement, against 0.36 ms for the same query
given ``'{1,2,...}'`` built with ``str.join`` (100 runs each, this machine). A broadcast
sends three such arrays per 1,000 recipients, from the process that serves pages.

Only integers go in: each value is passed through ``int()``, so the literal cannot hold
anything but digits, signs and commas. Use it as ``%s::bigint[]`` (or ``::int[]``).
"""

from collections.abc import Iterable


def int_array(values: Iterable[int]) -> str:
    """PostgreSQL's text form of an integer array: ``[3, 1]`` -> ``'{3,1}'``."""
    return "{" + ",".join(str(int(value)) for value in values) + "}"
