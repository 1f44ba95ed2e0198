"""Settings that admins change while the server runs, stored in the database.

Two kinds, one table (``server_settings``, only what an admin changed):

- the registration policy (:class:`ServerPolicy`: ``registration_open``, ``email_required``),
  read from the database where it is used;
- overrides of :class:`~echochat.config.Settings` fields listed in :data:`LIVE_SETTINGS`
  (upload size, voice peers, GIF provider and key, rate limits, retention, room sizes):
  every process keeps ``ctx.settings`` = its configured settings (``ctx.base_settings``:
  defaults, file, environment) with the stored overrides applied, validated by
  ``Settings.model_validate`` of the merged values. A change is written in one transaction
  (audited: who, old -> new value, never a secret), applied on this process at once and
  announced on the bus channel :data:`CHANNEL`; every process (:func:`follow`) then reloads
  the overrides from the database, so code that reads ``ctx.settings.x`` at call time sees
  the new value everywhere without a restart.

A value of ``None`` in a change removes the override: the configured value applies again.
``echochat doctor`` shows overridden values with the provenance ``admin``
(:func:`stored` and :func:`doctor_rows`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, fields
from typing import Any, Literal, get_args

from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo

from echochat.bus import BusOverflow, BusUnavailable, Subscription
from echochat.config import Provenance, ResolvedSettings, Settings
from echochat.domain.errors import InvalidInput
from echochat.services.context import Context
from echochat.store import Database, audit
from echochat.store import server_settings as store

__all__ = [
    "CHANNEL",
    "EDITABLE",
    "LIVE_SETTINGS",
    "POLICY_SETTINGS",
    "SECRET_SETTINGS",
    "ServerPolicy",
    "SettingView",
    "apply_overrides",
    "current",
    "doctor_rows",
    "follow",
    "reload",
    "start_following",
    "stored",
    "update",
    "view",
]

log = logging.getLogger("echochat.settings")

CHANNEL = "admin:settings"
"""Bus channel on which a settings change is announced (the payload is only a poke)."""


@dataclass(frozen=True)
class ServerPolicy:
    registration_open: bool = True
    email_required: bool = False


_POLICY_DESCRIPTIONS = {
    "registration_open": "Anyone may create an account (off: only admins create accounts).",
    "email_required": "New accounts must give an email address (for password resets).",
}

POLICY_SETTINGS: tuple[str, ...] = tuple(f.name for f in fields(ServerPolicy))

LIVE_SETTINGS: tuple[str, ...] = (
    "upload_max_bytes",
    "voice_max_room_peers",
    "gif_provider",
    "gif_api_key",
    "message_retention_days",
    "room_capacity",
    "group_max_members",
    "encrypted_group_max_members",
    *(name for name in Settings.model_fields if name.startswith("rate_limit_")),
)
"""Settings fields an admin may override at run time."""

SECRET_SETTINGS = frozenset({"gif_api_key"})
"""Write-only: reading shows only whether a value is set; the audit log never holds it."""

EDITABLE: tuple[str, ...] = POLICY_SETTINGS + LIVE_SETTINGS

Kind = Literal["bool", "int", "choice", "rate", "secret"]


@dataclass(frozen=True)
class SettingView:
    """One editable setting as the admin panel shows it (a secret's value is never shown)."""

    name: str
    kind: Kind
    description: str
    value: bool | int | str | None
    is_set: bool
    source: Literal["admin", "config"]
    updated_by: str | None
    updated_at: str | None
    choices: list[str] | None = None
    minimum: int | None = None
    maximum: int | None = None


# --- the registration policy ---------------------------------------------------------------


async def current(ctx: Context) -> ServerPolicy:
    async with ctx.db.read() as conn:
        values = await store.all_values(conn)
    return ServerPolicy(**{k: v for k, v in values.items() if k in POLICY_SETTINGS})


# --- overrides of Settings --------------------------------------------------------------------


async def stored(db: Database) -> dict[str, Any]:
    """The overrides an admin saved, by name (secrets included: do not print them).

    For ``echochat doctor``: pass the result to :func:`doctor_rows`."""
    async with db.read() as conn:
        values = await store.all_values(conn)
    return {k: v for k, v in values.items() if k in EDITABLE}


def _merged(base: Settings, overrides: dict[str, Any]) -> Settings:
    """``base`` with ``overrides`` applied, validated as a whole; :class:`InvalidInput`
    (``invalid_setting``, naming the field) when a value is not acceptable."""
    if not overrides:
        return base
    data = base.model_dump()
    data.update(overrides)
    try:
        checked = Settings.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else "settings"
        message = str(err["msg"]).removeprefix("Value error, ")
        raise InvalidInput(
            f"{name}: {message}", code="invalid_setting", details={"field": name}
        ) from exc
    return base.model_copy(update={name: getattr(checked, name) for name in overrides})


def _valid(base: Settings, live: dict[str, Any]) -> dict[str, Any]:
    """The overrides of ``live`` that validate: all of them, or (after an upgrade tightened
    a limit, say) those that do on their own, with a warning for each one dropped."""
    try:
        _merged(base, live)
    except InvalidInput:
        pass
    else:
        return live
    good: dict[str, Any] = {}
    for name, value in live.items():
        try:
            _merged(base, {**good, name: value})
        except InvalidInput as exc:
            log.warning("ignoring the stored admin setting %s: %s", name, exc.message)
        else:
            good[name] = value
    return good


def apply_overrides(ctx: Context, overrides: dict[str, Any]) -> Settings:
    """Replace ``ctx.settings`` with its configured settings plus ``overrides`` (only
    :data:`LIVE_SETTINGS` count; a stored value that no longer validates is skipped)."""
    if ctx.base_settings is None:
        ctx.base_settings = ctx.settings
    base = ctx.base_settings
    live = {k: v for k, v in overrides.items() if k in LIVE_SETTINGS}
    ctx.settings = _merged(base, _valid(base, live))
    return ctx.settings


async def reload(ctx: Context) -> Settings:
    """Apply the overrides stored now (every process, on every announcement)."""
    return apply_overrides(ctx, await stored(ctx.db))


async def follow(ctx: Context, sub: Subscription) -> None:
    """Reload the overrides whenever :data:`CHANNEL` announces a change (or the bus may have
    dropped one), until the subscription closes."""
    while True:
        try:
            await sub.get()
        except BusOverflow:
            pass
        except StopAsyncIteration:
            return
        try:
            await reload(ctx)
        except Exception:
            log.exception("could not reload the admin settings; keeping the previous ones")


async def start_following(ctx: Context) -> asyncio.Task[None]:
    """At start-up: listen on :data:`CHANNEL`, then apply the stored overrides (in this
    order, so no change is missed), and keep following them. Cancel the task to stop."""
    sub = await ctx.bus.subscribe(CHANNEL, maxsize=16)
    await reload(ctx)

    async def run() -> None:
        try:
            await follow(ctx, sub)
        finally:
            with contextlib.suppress(BusUnavailable):
                await sub.close()

    return asyncio.create_task(run(), name="admin-settings")


# --- reading and changing ---------------------------------------------------------------------


def _bounds(info: FieldInfo) -> tuple[int | None, int | None]:
    low = high = None
    for meta in info.metadata:
        low = getattr(meta, "ge", low)
        high = getattr(meta, "le", high)
    return low, high


def _kind(name: str) -> Kind:
    if name in POLICY_SETTINGS:
        return "bool"
    if name in SECRET_SETTINGS:
        return "secret"
    if name.startswith("rate_limit_"):
        return "rate"
    if name == "gif_provider":
        return "choice"
    return "int"


def _shown(settings: Settings, name: str) -> bool | int | str | None:
    value = getattr(settings, name)
    if isinstance(value, SecretStr):
        return None
    if isinstance(value, bool | int | str) or value is None:
        return value
    return str(value)


def _is_set(settings: Settings, name: str) -> bool:
    value = getattr(settings, name)
    if isinstance(value, SecretStr):
        return bool(value.get_secret_value())
    return value is not None


async def view(ctx: Context) -> list[SettingView]:
    """Every editable setting with its effective value and where it comes from."""
    async with ctx.db.read() as conn:
        rows = await store.all_rows(conn)
    policy = ServerPolicy(**{k: r.value for k, r in rows.items() if k in POLICY_SETTINGS})
    settings = ctx.settings
    out: list[SettingView] = []
    for name in EDITABLE:
        row = rows.get(name)
        stamp = {
            "source": "admin" if row is not None else "config",
            "updated_by": row.updated_by if row is not None else None,
            "updated_at": row.updated_at.isoformat() if row is not None else None,
        }
        if name in POLICY_SETTINGS:
            value = bool(getattr(policy, name))
            out.append(
                SettingView(
                    name=name,
                    kind="bool",
                    description=_POLICY_DESCRIPTIONS[name],
                    value=value,
                    is_set=True,
                    **stamp,  # type: ignore[arg-type]
                )
            )
            continue
        info = Settings.model_fields[name]
        low, high = _bounds(info)
        kind = _kind(name)
        choices = None
        if kind == "choice":
            choices = [str(c) for c in get_args(info.annotation)]
        out.append(
            SettingView(
                name=name,
                kind=kind,
                description=info.description or "",
                value=_shown(settings, name),
                is_set=_is_set(settings, name),
                choices=choices,
                minimum=low,
                maximum=high,
                **stamp,  # type: ignore[arg-type]
            )
        )
    return out


def _check_type(key: str, value: Any) -> None:
    kind = _kind(key)
    if kind == "bool":
        ok, wanted = isinstance(value, bool), "true or false"
    elif kind == "int":
        ok, wanted = isinstance(value, int) and not isinstance(value, bool), "a whole number"
    else:
        ok, wanted = isinstance(value, str), "a string"
    if not ok:
        raise InvalidInput(
            f"{key} must be {wanted}", code="invalid_setting", details={"field": key}
        )


def _audit_value(name: str, value: Any) -> Any:
    if isinstance(value, SecretStr):
        return None
    if name in SECRET_SETTINGS:
        return None
    return value if isinstance(value, bool | int | float | str) or value is None else str(value)


async def update(
    ctx: Context, changes: dict[str, Any], *, actor: str, actor_id: int | None, ip: str = ""
) -> None:
    """Change settings (``None``: back to the configured value); all or nothing.

    Every change is audited as ``settings.update`` with the old and new value (a secret only
    as set / not set); then this process applies it and every other process is told."""
    if not changes:
        raise InvalidInput("nothing to change", code="invalid_setting")
    for key, value in changes.items():
        if key not in EDITABLE:
            raise InvalidInput(
                f"unknown setting {key!r}; editable: {', '.join(EDITABLE)}",
                code="unknown_setting",
                details={"field": key},
            )
        if value is not None:
            _check_type(key, value)
    base = ctx.base_settings or ctx.settings
    async with ctx.db.transaction() as conn:
        before = await store.all_values(conn)
        after = {k: v for k, v in before.items() if k in EDITABLE}
        for key, value in changes.items():
            if value is None:
                after.pop(key, None)
            else:
                after[key] = value
        live_after = {k: v for k, v in after.items() if k in LIVE_SETTINGS}
        new_settings = _merged(base, live_after)  # raises before anything is written
        old_settings = _merged(base, {k: v for k, v in before.items() if k in LIVE_SETTINGS})
        for key in changes:
            if key in POLICY_SETTINGS:
                default = getattr(ServerPolicy(), key)
                old, new = before.get(key, default), after.get(key, default)
            else:
                old, new = getattr(old_settings, key), getattr(new_settings, key)
            if key in after:
                # store the validated form (e.g. a rate without surrounding spaces)
                stored_value = new if key in POLICY_SETTINGS else getattr(new_settings, key)
                if isinstance(stored_value, SecretStr):
                    stored_value = stored_value.get_secret_value()
                await store.put_txn(conn, key, stored_value, by=actor)
            else:
                await store.delete_txn(conn, key)
            details: dict[str, Any] = {"reset": key not in after}
            if key in SECRET_SETTINGS:
                details["was_set"] = _is_set(old_settings, key)
                details["is_set"] = _is_set(new_settings, key)
            else:
                details["old"] = _audit_value(key, old)
                details["new"] = _audit_value(key, new)
            await audit.append_txn(
                conn,
                actor=actor,
                actor_id=actor_id,
                action="settings.update",
                target_type="setting",
                target=key,
                ip=ip,
                details=details,
            )
    apply_overrides(ctx, after)
    try:
        await ctx.bus.publish(CHANNEL, b"1")
    except BusUnavailable as exc:
        log.warning("settings changed but other processes could not be told: %s", exc)


# --- echochat doctor ----------------------------------------------------------------------


def doctor_rows(
    resolved: ResolvedSettings, overrides: dict[str, Any]
) -> list[tuple[str, str, Provenance]]:
    """``resolved.rows()`` with the admin's overrides applied (provenance ``admin``, secrets
    masked), followed by the registration policy (``admin`` when stored, else ``default``)."""
    live = _valid(resolved.settings, {k: v for k, v in overrides.items() if k in LIVE_SETTINGS})
    with_overrides = ResolvedSettings(
        settings=_merged(resolved.settings, live),
        provenance={**resolved.provenance, **dict.fromkeys(live, "admin")},
        config_file=resolved.config_file,
        notes=resolved.notes,
    )
    rows = with_overrides.rows()
    for name in POLICY_SETTINGS:
        if name in overrides:
            rows.append((name, str(bool(overrides[name])).lower(), "admin"))
        else:
            rows.append((name, str(getattr(ServerPolicy(), name)).lower(), "default"))
    return rows
