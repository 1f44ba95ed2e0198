"""Settings: precedence, provenance, refusals, the persisted secret key and masking."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from echochat.config import ConfigError, ResolvedSettings, load_settings, mask_url

LONG_SECRET = "s3cr3t-" + "x" * 40


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory (where ``echochat.toml`` is looked for)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def load(cwd: Path, env: dict[str, str] | None = None, **kwargs: Any) -> ResolvedSettings:
    environ = {"ECHOCHAT_DATA_DIR": str(cwd / "data"), **(env or {})}
    return load_settings(environ=environ, **kwargs)


def row_map(resolved: ResolvedSettings) -> dict[str, tuple[str, str]]:
    return {name: (shown, source) for name, shown, source in resolved.rows()}


# --- precedence and provenance -------------------------------------------------------------


def test_defaults_only(cwd: Path) -> None:
    resolved = load(cwd)
    s = resolved.settings
    assert (s.host, s.port, s.workers, s.log_level) == ("127.0.0.1", 8000, 1, "info")
    assert s.database_url is None
    assert s.redis_url is None
    assert s.is_sqlite
    assert s.migrate_at_start
    assert resolved.config_file is None
    rows = row_map(resolved)
    assert rows["port"] == ("8000", "default")
    assert rows["data_dir"][1] == "env"
    assert rows["secret_key"][1] == "generated"


def test_precedence_default_file_env_overrides(cwd: Path) -> None:
    (cwd / "echochat.toml").write_text(
        'port = 8001\nlog_level = "debug"\nredis_prefix = "file:"\nmax_frame_bytes = 2048\n'
    )
    env = {"ECHOCHAT_PORT": "8002", "ECHOCHAT_REDIS_PREFIX": "env:"}
    resolved = load(cwd, env, overrides={"port": 8003, "host": None})
    s = resolved.settings
    assert s.port == 8003  # override beats env beats file
    assert s.redis_prefix == "env:"  # env beats file
    assert s.log_level == "debug"  # file beats default
    assert s.max_frame_bytes == 2048
    assert s.host == "127.0.0.1"  # an override of None means "not given"
    assert resolved.config_file == Path("echochat.toml")
    rows = row_map(resolved)
    assert rows["port"] == ("8003", "env")
    assert rows["redis_prefix"] == ("env:", "env")
    assert rows["log_level"] == ("debug", "file")
    assert rows["max_frame_bytes"] == ("2048", "file")
    assert rows["host"] == ("127.0.0.1", "default")


def test_file_under_echochat_table(cwd: Path) -> None:
    (cwd / "echochat.toml").write_text('[echochat]\nport = 8011\nlog_level = "warning"\n')
    resolved = load(cwd)
    assert resolved.settings.port == 8011
    assert resolved.settings.log_level == "warning"
    assert resolved.provenance["port"] == "file"


def test_config_file_from_env_and_missing_explicit_file(cwd: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere.toml"
    other.write_text("port = 8123\n")
    resolved = load(cwd, {"ECHOCHAT_CONFIG": str(other)})
    assert resolved.settings.port == 8123
    assert resolved.config_file == other
    with pytest.raises(ConfigError, match="does not exist"):
        load(cwd, {"ECHOCHAT_CONFIG": str(tmp_path / "missing.toml")})


# --- origins and public URL ----------------------------------------------------------------


@pytest.mark.parametrize("value", ["*", "https://a.example.org,*"])
def test_wildcard_origin_refused(cwd: Path, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(cwd, {"ECHOCHAT_ALLOWED_ORIGINS": value})
    message = str(info.value)
    assert "allowed_origins" in message
    assert "ECHOCHAT_ALLOWED_ORIGINS" in message
    assert "'*' is not allowed" in message


def test_wildcard_origin_refused_from_file(cwd: Path) -> None:
    (cwd / "echochat.toml").write_text('allowed_origins = ["*"]\n')
    with pytest.raises(ConfigError, match=r"allowed_origins.*config file"):
        load(cwd)


def test_allowed_origins_default_to_public_url_origin(cwd: Path) -> None:
    s = load(cwd, {"ECHOCHAT_PUBLIC_URL": "https://chat.example.org:8443/echo/"}).settings
    assert s.allowed_origins == []
    assert s.origins == ["https://chat.example.org:8443"]
    assert s.public_url == "https://chat.example.org:8443/echo"
    assert s.secure_cookies


def test_explicit_allowed_origins_are_normalised(cwd: Path) -> None:
    env = {"ECHOCHAT_ALLOWED_ORIGINS": " https://a.example.org/ , http://b.example.org:81 "}
    s = load(cwd, env).settings
    assert s.origins == ["https://a.example.org", "http://b.example.org:81"]


def test_origin_with_path_refused(cwd: Path) -> None:
    with pytest.raises(ConfigError, match="not an origin"):
        load(cwd, {"ECHOCHAT_ALLOWED_ORIGINS": "https://a.example.org/chat"})


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        (None, None, "http://127.0.0.1:8000"),
        ("0.0.0.0", 9000, "http://127.0.0.1:9000"),
        ("::1", 8080, "http://[::1]:8080"),
        ("chat.local", 8001, "http://chat.local:8001"),
    ],
)
def test_public_url_derives_from_host_and_port(
    cwd: Path, host: str | None, port: int | None, expected: str
) -> None:
    s = load(cwd, overrides={"host": host, "port": port}).settings
    assert s.public_url == expected
    assert s.origins == [expected]
    assert not s.secure_cookies


# --- invalid values name the setting and its source ---------------------------------------


def test_invalid_env_value_names_setting_and_variable(cwd: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(cwd, {"ECHOCHAT_PORT": "eighty"})
    message = str(info.value)
    assert "port" in message
    assert "environment variable ECHOCHAT_PORT" in message


def test_invalid_file_value_names_setting_and_file(cwd: Path) -> None:
    (cwd / "echochat.toml").write_text("port = 0\n")
    with pytest.raises(ConfigError) as info:
        load(cwd)
    message = str(info.value)
    assert "invalid setting port" in message
    assert "config file" in message


@pytest.mark.parametrize(
    ("var", "value", "setting"),
    [
        ("ECHOCHAT_PUBLIC_URL", "ftp://example.org", "public_url"),
        ("ECHOCHAT_DATABASE_URL", "mysql://u@h/db", "database_url"),
        ("ECHOCHAT_REDIS_URL", "http://127.0.0.1:6379", "redis_url"),
        ("ECHOCHAT_LOG_LEVEL", "loud", "log_level"),
        ("ECHOCHAT_WORKERS", "0", "workers"),
    ],
)
def test_invalid_values_refused(cwd: Path, var: str, value: str, setting: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(cwd, {var: value})
    assert setting in str(info.value)
    assert var in str(info.value)


def test_unknown_key_in_file_refused(cwd: Path) -> None:
    (cwd / "echochat.toml").write_text("port = 8001\ncolour = 'blue'\n")
    with pytest.raises(ConfigError) as info:
        load(cwd)
    assert "'colour'" in str(info.value)
    assert "echochat.toml" in str(info.value)


def test_unknown_key_under_echochat_table_refused(cwd: Path) -> None:
    (cwd / "echochat.toml").write_text("[echochat]\nprot = 8001\n")
    with pytest.raises(ConfigError, match="'prot'"):
        load(cwd)


def test_invalid_toml_refused(cwd: Path) -> None:
    (cwd / "echochat.toml").write_text("port = = 1\n[unterminated\n")
    with pytest.raises(ConfigError) as info:
        load(cwd)
    assert "not valid TOML" in str(info.value)
    assert "echochat.toml" in str(info.value)


# --- the secret key ------------------------------------------------------------------------


def test_secret_key_generated_persisted_0600_and_stable(cwd: Path) -> None:
    first = load(cwd)
    path = cwd / "data" / "secret_key"
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    secret = first.settings.secret()
    assert len(secret) >= 32
    assert path.read_text().strip() == secret
    assert first.provenance["secret_key"] == "generated"
    second = load(cwd)
    assert second.settings.secret() == secret


def test_secret_key_file_with_loose_mode_is_tightened(cwd: Path) -> None:
    load(cwd)
    path = cwd / "data" / "secret_key"
    path.chmod(0o644)
    load(cwd)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_corrupt_secret_key_file_refused(cwd: Path) -> None:
    (cwd / "data").mkdir()
    (cwd / "data" / "secret_key").write_text("short\n")
    with pytest.raises(ConfigError, match="corrupt"):
        load(cwd)


def test_secret_key_from_env_is_used_and_not_written(cwd: Path) -> None:
    resolved = load(cwd, {"ECHOCHAT_SECRET_KEY": LONG_SECRET})
    assert resolved.settings.secret() == LONG_SECRET
    assert resolved.provenance["secret_key"] == "env"
    assert not (cwd / "data" / "secret_key").exists()


def test_too_short_secret_refused(cwd: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(cwd, {"ECHOCHAT_SECRET_KEY": "tooshort"})
    assert "secret_key" in str(info.value)
    assert "32" in str(info.value)
    assert "tooshort" not in str(info.value)


def test_no_data_dir_created_when_not_asked(cwd: Path) -> None:
    resolved = load(cwd, create_data_dir=False)
    assert not (cwd / "data").exists()
    assert resolved.settings.secret_key is None


# --- data dir ------------------------------------------------------------------------------


def test_data_dir_that_is_a_file_refused(cwd: Path) -> None:
    (cwd / "data").write_text("not a folder")
    with pytest.raises(ConfigError) as info:
        load(cwd)
    assert "data" in str(info.value)
    assert "ECHOCHAT_DATA_DIR" in str(info.value)


def test_data_dir_is_created(cwd: Path) -> None:
    load(cwd, {"ECHOCHAT_DATA_DIR": str(cwd / "a" / "b" / "c")})
    assert (cwd / "a" / "b" / "c" / "secret_key").is_file()


# --- several workers -----------------------------------------------------------------------


def test_workers_without_redis_refused(cwd: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(cwd, {"ECHOCHAT_DATABASE_URL": "postgresql://u@127.0.0.1/x"}, overrides={"workers": 2})
    assert "ECHOCHAT_REDIS_URL" in str(info.value)
    assert "workers" in str(info.value)


def test_workers_with_sqlite_refused(cwd: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(cwd, {"ECHOCHAT_REDIS_URL": "redis://127.0.0.1:6379/0", "ECHOCHAT_WORKERS": "3"})
    assert "PostgreSQL" in str(info.value)
    assert "ECHOCHAT_DATABASE_URL" in str(info.value)


def test_workers_with_redis_and_postgres_accepted(cwd: Path) -> None:
    env = {
        "ECHOCHAT_REDIS_URL": "redis://127.0.0.1:6379/0",
        "ECHOCHAT_DATABASE_URL": "postgresql://u@127.0.0.1/x",
        "ECHOCHAT_WORKERS": "4",
    }
    s = load(cwd, env).settings
    assert s.workers == 4
    assert not s.is_sqlite
    assert not s.migrate_at_start  # PostgreSQL: migrations are an explicit step by default


# --- URLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (
            "postgresql+asyncpg://u:secretpw@db.example.org:5432/chat",
            "postgresql+asyncpg://u:***@db.example.org:5432/chat",
        ),
        ("redis://:secretpw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("postgresql://u:p@ss@w0rd@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("sqlite+aiosqlite:////tmp/x.sqlite3", "sqlite+aiosqlite:////tmp/x.sqlite3"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@h:5432/db", "postgresql+asyncpg://u:p@h:5432/db"),
        ("postgresql://u:p@h/db", "postgresql+asyncpg://u:p@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("sqlite:////tmp/x.sqlite3", "sqlite+aiosqlite:////tmp/x.sqlite3"),
    ],
)
def test_database_url_normalised(cwd: Path, given: str, expected: str) -> None:
    s = load(cwd, {"ECHOCHAT_DATABASE_URL": given}).settings
    assert s.database_url == expected
    assert s.resolved_database_url == expected


def test_empty_database_url_means_sqlite_in_data_dir(cwd: Path) -> None:
    s = load(cwd, {"ECHOCHAT_DATABASE_URL": ""}).settings
    assert s.database_url is None
    assert s.resolved_database_url == (
        f"sqlite+aiosqlite:///{(cwd / 'data' / 'echochat.sqlite3').resolve()}"
    )


def test_rows_never_show_secrets(cwd: Path) -> None:
    env = {
        "ECHOCHAT_SECRET_KEY": LONG_SECRET,
        "ECHOCHAT_METRICS_TOKEN": "metrics-token-value",
        "ECHOCHAT_DATABASE_URL": "postgresql://u:dbsecretpw@127.0.0.1/x",
        "ECHOCHAT_REDIS_URL": "redis://:redissecretpw@127.0.0.1:6379/0",
    }
    resolved = load(cwd, env)
    text = repr(resolved.rows())
    for secret in (LONG_SECRET, "metrics-token-value", "dbsecretpw", "redissecretpw"):
        assert secret not in text
    rows = row_map(resolved)
    assert rows["secret_key"] == ("********", "env")
    assert rows["metrics_token"] == ("********", "env")
    assert rows["database_url"][0] == "postgresql+asyncpg://u:***@127.0.0.1/x"
    assert rows["redis_url"][0] == "redis://:***@127.0.0.1:6379/0"
    # Not even the repr of the settings object leaks them.
    assert LONG_SECRET not in repr(resolved.settings)


def test_rows_never_show_generated_secret(cwd: Path) -> None:
    resolved = load(cwd)
    assert resolved.settings.secret() not in repr(resolved.rows())
    assert row_map(resolved)["secret_key"] == ("********", "generated")


def test_mask_url_hides_password_in_query() -> None:
    masked = mask_url("postgresql+asyncpg://u@db.example.org/chat?password=secretpw&ssl=require")
    assert "secretpw" not in masked
    assert "ssl=require" in masked


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("database_url", None),
        ("redis_url", None),
        ("public_url", "http://127.0.0.1:8000"),
        ("allowed_origins", []),
        pytest.param("auto_migrate", None),
        pytest.param("metrics_token", None),
    ],
)
def test_empty_env_value_means_default(cwd: Path, name: str, expected: object) -> None:
    resolved = load(cwd, {f"ECHOCHAT_{name.upper()}": ""})
    assert getattr(resolved.settings, name) == expected


def test_empty_secret_key_env_means_generated(cwd: Path) -> None:
    resolved = load(cwd, {"ECHOCHAT_SECRET_KEY": ""})
    assert resolved.provenance["secret_key"] == "generated"
    assert len(resolved.settings.secret()) >= 32


def test_too_short_secret_names_its_source(cwd: Path) -> None:
    with pytest.raises(ConfigError, match="ECHOCHAT_SECRET_KEY"):
        load(cwd, {"ECHOCHAT_SECRET_KEY": "tooshort"})
