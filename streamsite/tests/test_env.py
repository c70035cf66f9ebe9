"""Each environment variable is parsed, and a bad value names its variable."""

import pytest

from streamsite.env import (
    ConfigError,
    channel_layer_from_url,
    csrf_trusted_origins,
    database_from_url,
    env_bool,
    env_int,
    env_list,
    secret_key,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("true", True), ("Yes", True), ("on", True), ("0", False), ("off", False)],
)
def test_env_bool_reads_the_usual_words(raw, expected):
    assert env_bool("DJANGO_DEBUG", not expected, {"DJANGO_DEBUG": raw}) is expected


def test_env_bool_defaults_when_unset():
    assert env_bool("DJANGO_DEBUG", True, {}) is True


def test_env_bool_rejects_other_words_naming_the_variable():
    with pytest.raises(ConfigError, match="DJANGO_DEBUG='maybe' is not a boolean"):
        env_bool("DJANGO_DEBUG", True, {"DJANGO_DEBUG": "maybe"})


def test_env_int_reads_and_bounds():
    assert env_int("N", 5, environ={"N": " 12 "}) == 12
    assert env_int("N", 5, environ={}) == 5
    with pytest.raises(ConfigError, match="N='x' is not a whole number"):
        env_int("N", 5, environ={"N": "x"})
    with pytest.raises(ConfigError, match="must be at least 1"):
        env_int("N", 5, minimum=1, environ={"N": "0"})


def test_allowed_hosts_list_drops_blanks():
    env = {"DJANGO_ALLOWED_HOSTS": "example.com, .example.org,,"}
    assert env_list("DJANGO_ALLOWED_HOSTS", ["localhost"], env) == ["example.com", ".example.org"]
    assert env_list("DJANGO_ALLOWED_HOSTS", ["localhost"], {}) == ["localhost"]


def test_csrf_trusted_origins_need_a_scheme():
    env = {"DJANGO_CSRF_TRUSTED_ORIGINS": "https://a.example,http://b.example:8000"}
    assert csrf_trusted_origins("DJANGO_CSRF_TRUSTED_ORIGINS", env) == [
        "https://a.example",
        "http://b.example:8000",
    ]
    with pytest.raises(ConfigError, match=r"DJANGO_CSRF_TRUSTED_ORIGINS: 'a\.example'"):
        csrf_trusted_origins(
            "DJANGO_CSRF_TRUSTED_ORIGINS", {"DJANGO_CSRF_TRUSTED_ORIGINS": "a.example"}
        )


def test_secret_key_required_without_debug():
    with pytest.raises(ConfigError, match="DJANGO_SECRET_KEY is required when DJANGO_DEBUG is off"):
        secret_key(False, {})
    assert secret_key(False, {"DJANGO_SECRET_KEY": "s3cret"}) == "s3cret"
    assert secret_key(True, {}).startswith("django-insecure-")


def test_database_url_postgres_uses_psycopg_pool():
    config = database_from_url("postgres://app:pw@db.internal:6543/site", pool_max_size=7)
    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert (config["HOST"], config["PORT"], config["NAME"]) == ("db.internal", 6543, "site")
    assert (config["USER"], config["PASSWORD"]) == ("app", "pw")
    assert config["CONN_MAX_AGE"] == 0
    assert config["OPTIONS"]["pool"]["max_size"] == 7


def test_database_url_sqlite_paths():
    assert database_from_url("sqlite:////tmp/x.sqlite3")["NAME"] == "/tmp/x.sqlite3"
    assert database_from_url("sqlite:///rel.sqlite3")["NAME"] == "rel.sqlite3"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u@h/db", "unsupported scheme 'mysql'"),
        ("postgres://u@h:port/db", "the port in"),
        ("postgres:///db", "no host"),
        ("postgres://u@h:5432/", "no database name"),
        ("sqlite://", "needs a file"),
        ("not a url", "unsupported scheme ''"),
    ],
)
def test_bad_database_url_names_the_variable(url, message):
    with pytest.raises(ConfigError, match=rf"^DATABASE_URL: .*{message}"):
        database_from_url(url)


def test_bad_database_url_hides_the_password():
    with pytest.raises(ConfigError) as error:
        database_from_url("postgres://u:hunter2@h:x/db")
    assert "hunter2" not in str(error.value)


def test_no_redis_url_means_in_memory_layer():
    assert channel_layer_from_url("")["BACKEND"] == "channels.layers.InMemoryChannelLayer"


def test_redis_url_configures_channels_redis_for_redis_py_8():
    config = channel_layer_from_url("redis://127.0.0.1:6379/3")
    assert config["BACKEND"] == "streamsite.streaming.layer.RedisChannelLayer"
    (host,) = config["CONFIG"]["hosts"]
    assert host == {
        "address": "redis://127.0.0.1:6379/3",
        "socket_timeout": None,
        "max_connections": 4096,
    }


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h:6379", "unsupported scheme 'http'"),
        ("redis://h:abc/0", "the port in"),
        ("redis://:6379/0", "no host"),
        ("redis://h:6379/zero", "must be a number"),
    ],
)
def test_bad_redis_url_names_the_variable(url, message):
    with pytest.raises(ConfigError, match=rf"^REDIS_URL: .*{message}"):
        channel_layer_from_url(url)
