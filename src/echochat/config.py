"""Settings: defaults < ``echochat.toml`` < ``ECHOCHAT_*`` environment variables.

Every resolved value remembers where it came from (``default``, ``file`` or ``env``), so
``echochat doctor`` can explain the configuration instead of leaving people to guess which
database they are talking to (the original project's worst support problem).

Settings are built once, by the CLI or by :func:`echochat.app.create_app`'s caller, and
passed in; nothing imports a global settings object.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from limits import parse_many
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "ENV_PREFIX",
    "ConfigError",
    "Provenance",
    "ResolvedSettings",
    "Settings",
    "check_rate",
    "load_settings",
    "mask_url",
]

ENV_PREFIX = "ECHOCHAT_"
DEFAULT_CONFIG_FILE = "echochat.toml"
SECRET_KEY_FILE = "secret_key"

Provenance = Literal["default", "file", "env", "generated", "admin"]
"""Where a value came from; ``admin``: an override an admin saved in the database
(``services/server_settings.py``), applied on top of the other sources at run time."""


class ConfigError(Exception):
    """A setting is wrong; the message names the setting and says how to fix it."""


class Settings(BaseModel):
    """The whole configuration of one EchoChat deployment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path = Field(
        default=Path("echochat-data"),
        description="Folder for the SQLite database, uploads and the secret key.",
    )
    public_url: str = Field(
        default="",
        description="The URL people type to reach this server (links, cookies, origin check). "
        "Empty means http://HOST:PORT.",
    )
    host: str = Field(default="127.0.0.1", description="Address the HTTP server binds to.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port the HTTP server binds to.")
    workers: int = Field(default=1, ge=1, le=64, description="Server processes to run.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; empty means SQLite in the data dir.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis URL for the shared bus; empty means the in-process bus.",
    )
    redis_prefix: str = Field(
        default="echochat:", description="Prefix of every Redis key and channel."
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed for WebSockets and unsafe requests; empty means the "
        "public URL's origin.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Server secret (tokens, CSRF). Empty means generated once and kept in "
        "the data dir.",
    )
    auto_migrate: bool | None = Field(
        default=None,
        description="Apply migrations at start. Empty means yes on SQLite, no on PostgreSQL.",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token a Prometheus scraper presents to GET /metrics.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Logging threshold."
    )
    max_frame_bytes: int = Field(
        default=65536, ge=1024, le=16 * 1024 * 1024, description="Largest WebSocket frame."
    )
    ws_frames_per_second: float = Field(
        default=20.0, gt=0, le=1000, description="Frames a socket may send per second."
    )
    ws_burst: int = Field(default=40, ge=1, le=10000, description="Burst of frames allowed.")
    ws_queue: int = Field(
        default=256,
        ge=8,
        le=100000,
        description="Frames queued for a slow socket before it is closed (the client resumes).",
    )
    ws_heartbeat: float = Field(
        default=25.0,
        ge=1,
        le=300,
        description="Seconds between the client's pings; a socket "
        "silent for three of them is closed.",
    )
    ws_compression: bool = Field(
        default=False,
        description="permessage-deflate on WebSockets (costs server memory per socket; see "
        "docs/performance.md).",
    )
    presence_ttl: float = Field(
        default=15.0,
        ge=1,
        le=600,
        description="Seconds after which a crashed process's users are shown offline.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Proxy addresses or networks (CIDR) whose X-Forwarded-For is believed.",
    )

    # accounts and sessions
    access_token_ttl: int = Field(
        default=600, ge=60, le=3600, description="Lifetime of an access token, seconds."
    )
    session_ttl: int = Field(
        default=30 * 86400,
        ge=3600,
        le=365 * 86400,
        description="A session ends this many seconds after its last refresh.",
    )
    refresh_grace: float = Field(
        default=10.0,
        ge=0,
        le=60,
        description="Seconds during which a just-rotated refresh token answers 409 instead of "
        "counting as reuse (two tabs refreshing at once).",
    )
    reset_pin_length: int = Field(default=6, ge=6, le=12, description="Digits in a reset PIN.")
    admin_claim_ttl: int = Field(
        default=24 * 3600, ge=300, description="Lifetime of the first-admin claim link, seconds."
    )

    # rate limits ("N per period" strings in the syntax of the `limits` library)
    rate_limit_login_ip: str = Field(default="30/minute", description="Logins per IP.")
    rate_limit_login_account: str = Field(
        default="10/15minutes", description="Failed logins per account."
    )
    rate_limit_register_ip: str = Field(default="10/hour", description="Registrations per IP.")
    rate_limit_reset_ip: str = Field(default="10/hour", description="Reset requests per IP.")
    rate_limit_reset_account: str = Field(
        default="3/hour", description="Reset requests per account."
    )
    rate_limit_backup_account: str = Field(
        default="20/hour", description="Key backup downloads per account (passphrase guesses)."
    )
    rate_limit_dm_account: str = Field(
        default="200/10seconds", description="Direct messages a user may send (all peers)."
    )
    rate_limit_buzz: str = Field(
        default="3/10seconds", description="BUZZ!es from one user to one other user."
    )

    # direct messages
    message_retention_days: int = Field(
        default=0,
        ge=0,
        le=100 * 365,
        description="Delete direct messages older than this many days (hourly); 0 keeps them "
        "forever.",
    )
    replay_page: int = Field(
        default=100,
        ge=1,
        le=1000,
        description="Messages replayed per hello on a reconnect (the client asks for more).",
    )

    # chat rooms and private groups
    room_capacity: int = Field(
        default=1000,
        ge=2,
        le=100_000,
        description="Members a public room holds unless the room sets its own capacity.",
    )
    group_max_members: int = Field(
        default=200, ge=2, le=10_000, description="Members a private group may have."
    )
    encrypted_group_max_members: int = Field(
        default=20,
        ge=2,
        le=100,
        description="Members an end-to-end encrypted group may have (each message is wrapped "
        "for every member device, so it must fit one frame).",
    )
    rate_limit_room_account: str = Field(
        default="60/10seconds", description="Room messages a user may send (all rooms)."
    )
    rate_limit_room_invite: str = Field(
        default="30/hour",
        description="Group invites a user may send and private groups a user may create "
        "(one count for both).",
    )
    rate_limit_report_account: str = Field(
        default="20/hour", description="Reports a user may file."
    )

    # files, voice, GIFs (the admin panel edits these at run time)
    upload_max_bytes: int = Field(
        default=25 * 1024 * 1024,
        ge=1024,
        le=10 * 1024**3,
        description="Largest file accepted by the server fallback upload, in bytes.",
    )
    voice_max_room_peers: int = Field(
        default=0, ge=0, le=1000, description="Voice participants per room; 0 = unlimited."
    )
    gif_provider: Literal["none", "giphy"] = Field(
        default="none", description="GIF search provider: none or giphy."
    )
    gif_api_key: SecretStr | None = Field(
        default=None, description="The GIF provider's API key (never sent to browsers)."
    )

    # email
    email_backend: Literal["console", "smtp"] = Field(
        default="console", description="console: log and keep in the outbox; smtp: send."
    )
    email_from: str = Field(
        default="EchoChat <echochat@localhost>", description="From: of outgoing email."
    )
    smtp_host: str = Field(default="localhost", description="SMTP server.")
    smtp_port: int = Field(default=587, ge=1, le=65535, description="SMTP port.")
    smtp_username: str | None = Field(default=None, description="SMTP login.")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password.")
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="starttls (port 587), tls (port 465) or none."
    )
    smtp_timeout: float = Field(default=20.0, gt=0, le=300, description="SMTP timeout, seconds.")

    @model_validator(mode="before")
    @classmethod
    def _derive_public_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("public_url"):
            host = str(data.get("host") or "127.0.0.1")
            if host in ("0.0.0.0", "::", ""):  # noqa: S104 - displaying, not binding
                host = "127.0.0.1"
            if ":" in host:
                host = f"[{host}]"
            data = {**data, "public_url": f"http://{host}:{data.get('port') or 8000}"}
        return data

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL such as http://127.0.0.1:8000")
        return value.rstrip("/")

    @field_validator("allowed_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        out = []
        for origin in value:
            if origin.strip() == "*":
                raise ValueError(
                    "'*' is not allowed: list the exact origins, e.g. https://chat.example.org"
                )
            parts = urlsplit(origin)
            if (
                parts.scheme not in ("http", "https")
                or not parts.hostname
                or parts.path
                not in (
                    "",
                    "/",
                )
            ):
                raise ValueError(f"{origin!r} is not an origin like https://chat.example.org")
            out.append(urlunsplit((parts.scheme, parts.netloc, "", "", "")))
        return out

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"{item!r} is not an IP address or network (CIDR)") from exc
        return value

    @field_validator(
        "rate_limit_login_ip",
        "rate_limit_login_account",
        "rate_limit_register_ip",
        "rate_limit_reset_ip",
        "rate_limit_reset_account",
        "rate_limit_backup_account",
        "rate_limit_dm_account",
        "rate_limit_buzz",
        "rate_limit_room_account",
        "rate_limit_room_invite",
        "rate_limit_report_account",
    )
    @classmethod
    def _check_rate(cls, value: str) -> str:
        return check_rate(value)

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        scheme = urlsplit(value).scheme
        if scheme.startswith("postgres"):
            # Accept the URLs people copy from their hosting provider and pick the async driver.
            rest = value.split("://", 1)[1]
            return "postgresql+asyncpg://" + rest
        if scheme in ("sqlite", "sqlite+aiosqlite"):
            return "sqlite+aiosqlite://" + value.split("://", 1)[1]
        raise ValueError(
            "must start with postgresql:// (PostgreSQL) or sqlite:/// (SQLite file), "
            f"not {scheme}://"
        )

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    # Derived values -------------------------------------------------------------------

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'echochat.sqlite3').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def migrate_at_start(self) -> bool:
        return self.is_sqlite if self.auto_migrate is None else self.auto_migrate

    @property
    def origins(self) -> list[str]:
        if self.allowed_origins:
            return list(self.allowed_origins)
        parts = urlsplit(self.public_url)
        return [urlunsplit((parts.scheme, parts.netloc, "", "", ""))]

    @property
    def secure_cookies(self) -> bool:
        return self.public_url.startswith("https://")

    def secret(self) -> str:
        if self.secret_key is None:
            raise ConfigError("secret_key is not loaded: build settings with load_settings()")
        return self.secret_key.get_secret_value()


@dataclass(frozen=True)
class ResolvedSettings:
    """Settings plus where each value came from."""

    settings: Settings
    provenance: dict[str, Provenance]
    config_file: Path | None
    notes: list[str] = field(default_factory=list)

    def rows(self) -> list[tuple[str, str, Provenance]]:
        """(name, display value with secrets masked, provenance) for every setting."""
        out = []
        for name in Settings.model_fields:
            value = getattr(self.settings, name)
            if isinstance(value, SecretStr):
                shown = "********" if value.get_secret_value() else ""
            elif value is None:
                shown = ""
            elif name in ("database_url", "redis_url"):
                shown = mask_url(str(value))
            elif isinstance(value, list):
                shown = ", ".join(str(v) for v in value)
            else:
                shown = str(value)
            out.append((name, shown, self.provenance.get(name, "default")))
        return out


def check_rate(value: str) -> str:
    """``value`` if it is one rate the `limits` library parses (what the rate limiter uses),
    such as ``10/minute`` or ``5/15minutes``, allowing at least one event."""
    hint = f"{value!r} is not a rate such as '10/minute' or '5/15minutes'"
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        raise ValueError(hint)
    try:
        items = parse_many(value)
    except ValueError as exc:
        raise ValueError(hint) from exc
    if len(items) != 1 or items[0].amount < 1:
        raise ValueError(hint + " (one rate, of at least 1)")
    return value.strip()


def mask_url(url: str) -> str:
    """The URL with any password (in the user info or a ``password=`` query) as ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    query = re.sub(r"(?i)(^|&)(password|pass|pwd)=[^&]*", r"\1\2=***", parts.query)
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


_LIST_FIELDS = {"allowed_origins", "trusted_proxies"}


def _env_values(environ: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in Settings.model_fields:
        key = ENV_PREFIX + name.upper()
        if environ.get(key, "").strip():  # empty means unset, as the descriptions say
            raw = environ[key]
            if name in _LIST_FIELDS:
                values[name] = [item.strip() for item in raw.split(",") if item.strip()]
            else:
                values[name] = raw
    return values


def _file_values(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); fix the file or remove it") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from exc
    section = data.get("echochat", data)
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [echochat] must be a table of settings")
    unknown = sorted(set(section) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting {unknown[0]!r}; known settings are listed by "
            "'echochat doctor'"
        )
    return dict(section)


def _source_label(name: str, where: Provenance) -> str:
    return {
        "env": f"environment variable {ENV_PREFIX}{name.upper()}",
        "file": f"'{name}' in the config file",
        "default": f"default of '{name}'",
        "generated": f"generated '{name}'",
        "admin": f"admin override of '{name}'",
    }[where]


def _format_validation_error(exc: ValidationError, provenance: dict[str, Provenance]) -> str:
    err = exc.errors()[0]
    name = str(err["loc"][0]) if err["loc"] else "settings"
    source = _source_label(name, provenance.get(name, "default"))
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"invalid setting {name} (from {source}): {message}"


def load_settings(
    *,
    config_file: Path | None = None,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
    create_data_dir: bool = True,
) -> ResolvedSettings:
    """Resolve settings from defaults, the TOML file, the environment and explicit overrides.

    ``overrides`` (command-line flags) count as ``env``: they are set by whoever starts the
    process. The secret key is read from, or generated into, ``<data_dir>/secret_key``.
    """
    env = dict(os.environ if environ is None else environ)
    provenance: dict[str, Provenance] = {}
    merged: dict[str, Any] = {}

    explicit_file = config_file or (
        Path(env[ENV_PREFIX + "CONFIG"]) if env.get(ENV_PREFIX + "CONFIG") else None
    )
    path = explicit_file or Path(DEFAULT_CONFIG_FILE)
    used_file: Path | None = None
    if path.exists():
        for name, value in _file_values(path).items():
            merged[name] = value
            provenance[name] = "file"
        used_file = path
    elif explicit_file is not None:
        raise ConfigError(
            f"config file {explicit_file} does not exist; create it or drop the option"
        )
    for name, value in _env_values(env).items():
        merged[name] = value
        provenance[name] = "env"
    for name, value in (overrides or {}).items():
        if value is not None:
            merged[name] = value
            provenance[name] = "env"

    try:
        settings = Settings(**merged)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, provenance)) from exc

    notes: list[str] = []
    if settings.workers > 1 and settings.redis_url is None:
        raise ConfigError(
            f"invalid setting workers={settings.workers}: several processes need a shared bus; "
            f"set {ENV_PREFIX}REDIS_URL (e.g. redis://127.0.0.1:6379/0) or use --workers 1"
        )
    if settings.workers > 1 and settings.is_sqlite:
        raise ConfigError(
            f"invalid setting workers={settings.workers}: several processes need PostgreSQL; "
            f"set {ENV_PREFIX}DATABASE_URL=postgresql://... or use --workers 1"
        )

    data_dir = settings.data_dir
    if create_data_dir:
        _prepare_data_dir(data_dir)
    if settings.secret_key is None:
        secret = _load_or_create_secret(data_dir, create=create_data_dir)
        if secret is not None:
            settings = settings.model_copy(update={"secret_key": SecretStr(secret)})
            provenance["secret_key"] = "generated"
    elif len(settings.secret_key.get_secret_value()) < 32:
        source = _source_label("secret_key", provenance.get("secret_key", "default"))
        raise ConfigError(
            f"invalid setting secret_key (from {source}): it must be at least 32 characters; "
            "generate one with "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    return ResolvedSettings(settings, provenance, used_file, notes)


def _prepare_data_dir(data_dir: Path) -> None:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"data dir {data_dir} cannot be created ({exc.strerror}); choose another with "
            f"{ENV_PREFIX}DATA_DIR or fix its permissions"
        ) from exc
    if not data_dir.is_dir():
        raise ConfigError(f"data dir {data_dir} is not a directory; set {ENV_PREFIX}DATA_DIR")
    probe = data_dir / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"data dir {data_dir} is not writable ({exc.strerror}); fix its permissions or set "
            f"{ENV_PREFIX}DATA_DIR"
        ) from exc


def _load_or_create_secret(data_dir: Path, *, create: bool) -> str | None:
    path = data_dir / SECRET_KEY_FILE
    if path.exists():
        try:
            secret = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"{path} cannot be read ({exc}); restore it from a backup or delete it to "
                "generate a new one (this signs everyone out)"
            ) from exc
        if len(secret) < 32:
            raise ConfigError(
                f"{path} is corrupt (too short); restore it from a backup or delete it to "
                "generate a new one (this signs everyone out)"
            )
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            path.chmod(0o600)
        return secret
    if not create:
        return None
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(secret + "\n")
    return secret
