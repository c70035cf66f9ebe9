import psycopg
import pytest

from streamsite.pg_arrays import int_array
from streamsite.testing.services import skip_or_fail


def test_an_int_array_is_postgresqls_text_form():
    assert int_array([3, 1, -2]) == "{3,1,-2}"
    assert int_array([]) == "{}"
    assert int_array(iter([7])) == "{7}"


def test_an_int_array_takes_nothing_but_integers():
    with pytest.raises(ValueError):
        int_array(["1}, {2"])
    with pytest.raises(ValueError):
        int_array(["1; DROP TABLE x"])


@pytest.mark.parametrize("cast", ["bigint[]", "int[]"])
def test_postgresql_reads_it_back_as_the_same_integers_bound_as_django_binds(cast):
    try:
        connection = psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=postgres", connect_timeout=3
        )
    except psycopg.OperationalError as error:
        skip_or_fail(f"PostgreSQL on 127.0.0.1:5432: {error}")
    values = [2**31 - 1, 0, -5, *range(1000)] if cast == "int[]" else [2**62, 1, *range(1000)]
    with connection, psycopg.ClientCursor(connection) as cursor:  # Django's binding
        cursor.execute(f"SELECT %s::{cast}", [int_array(values)])
        assert cursor.fetchone()[0] == values
