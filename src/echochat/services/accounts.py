"""Accounts and sessions: register, sign in, refresh, sign out, list and revoke sessions.

Where the policy lives: account field rules in :mod:`echochat.domain.accounts`; token claims
in :mod:`echochat.services.tokens`; rotation with reuse detection in :func:`refresh`
(RFC 9700, 4.14.2); rate limits in :func:`limit`. Every request's session is checked in
:func:`authenticate`, so a revoked session stops working at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from echochat.domain import accounts as rules
from echochat.domain.clients import device_label
from echochat.domain.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    Unauthorized,
)
from echochat.services import notify, server_settings
from echochat.services.context import Context
from echochat.services.tokens import hash_secret, new_secret
from echochat.store import audit
from echochat.store import sessions as session_store
from echochat.store import users as user_store
from echochat.store.sessions import SessionRow

__all__ = [
    "Principal",
    "SignedIn",
    "account_limit_key",
    "authenticate",
    "create_account",
    "inactive_sessions",
    "limit",
    "list_sessions",
    "login",
    "logout",
    "refresh",
    "register",
    "revoke_session",
    "start_session",
]

log = logging.getLogger("echochat.auth")


@dataclass(frozen=True)
class Principal:
    """Who is making a request: the user, the session, and what they may do."""

    user_id: int
    username: str
    display_name: str
    session_id: str
    roles: frozenset[str]
    permissions: frozenset[str]

    def can(self, permission: str) -> bool:
        return permission in self.permissions


@dataclass(frozen=True)
class SignedIn:
    user_id: int
    username: str
    display_name: str
    session_id: str
    access_token: str
    refresh_token: str
    csrf_token: str
    expires_in: int


async def limit(ctx: Context, rate: str, scope: str, key: str, *, count: bool = True) -> None:
    wait = await (ctx.limiter.hit if count else ctx.limiter.test)(rate, scope, key)
    if wait:
        log.warning("rate limit hit scope=%s", scope)
        raise RateLimited(f"too many attempts; try again in {wait} seconds", retry_after=wait)


async def start_session(
    ctx: Context, user_id: int, username: str, display_name: str, *, ip: str, user_agent: str
) -> SignedIn:
    """Open a new session with its first refresh token (one transaction)."""
    now = ctx.clock()
    session_id = new_secret(32)
    refresh_token = new_secret(32)
    async with ctx.db.transaction() as conn:
        await session_store.insert_txn(
            conn,
            session_id=session_id,
            user_id=user_id,
            device_label=device_label(user_agent),
            user_agent=user_agent,
            ip=ip,
            now=now,
            expires_at=now + timedelta(seconds=ctx.settings.session_ttl),
        )
        await session_store.insert_refresh_txn(conn, hash_secret(refresh_token), session_id, now)
    return SignedIn(
        user_id=user_id,
        username=username,
        display_name=display_name,
        session_id=session_id,
        access_token=ctx.keys.issue_access(user_id, session_id, now=now.timestamp()),
        refresh_token=refresh_token,
        csrf_token=ctx.keys.issue_csrf(session_id),
        expires_in=ctx.settings.access_token_ttl,
    )


async def register(
    ctx: Context,
    *,
    username: str,
    password: str,
    email: str | None,
    display_name: str | None,
    ip: str,
    user_agent: str,
) -> SignedIn:
    """Create an account and sign it in."""
    policy = await server_settings.current(ctx)
    if not policy.registration_open:
        raise Forbidden("registration is closed on this server", code="registration_closed")
    name = rules.check_username(username)
    mail = rules.check_email(email)
    if mail is None and policy.email_required:
        raise InvalidInput(
            "an email address is required on this server",
            code="email_required",
            details={"field": "email"},
        )
    # Every field is checked before the attempt counts against the rate limit.
    rules.check_display_name(display_name, name)
    rules.check_password(password, name)
    await limit(ctx, ctx.settings.rate_limit_register_ip, "register-ip", ip)
    user_id, name, shown = await create_account(
        ctx, username=name, password=password, email=mail, display_name=display_name
    )
    return await start_session(ctx, user_id, name, shown, ip=ip, user_agent=user_agent)


async def create_account(
    ctx: Context,
    *,
    username: str,
    password: str,
    email: str | None,
    display_name: str | None,
    role: str | None = None,
    actor: str = "",
) -> tuple[int, str, str]:
    """Check the fields, hash the password and insert the user (with ``role``, audited):
    the part of registration that ``echochat admin create`` shares. (id, name, shown)."""
    name = rules.check_username(username)
    mail = rules.check_email(email)
    shown = rules.check_display_name(display_name, name)
    rules.check_password(password, name)
    password_hash = await ctx.hasher.hash(password)
    async with ctx.db.transaction() as conn:
        user_id = await user_store.insert_user_txn(
            conn, username=name, display_name=shown, email=mail, password_hash=password_hash
        )
        if role is not None and role != "user":
            if role not in await user_store.known_roles(conn):
                raise InvalidInput(f"unknown role {role!r}", code="unknown_role")
            await user_store.assign_role_txn(conn, user_id, role, actor)
            await audit.append_txn(
                conn,
                actor=actor,
                action="role.grant",
                target_type="user",
                target=name,
                details={"role": role, "at_creation": True},
            )
    log.info("account created user=%s", name)
    return user_id, name, shown


def account_limit_key(login: str, user_id: int | None) -> str:
    """The rate-limit identity of an account: its id when it exists, else the typed text."""
    return f"user:{user_id}" if user_id is not None else f"text:{login.strip().lower()[:254]}"


async def login(ctx: Context, *, login: str, password: str, ip: str, user_agent: str) -> SignedIn:
    """Check the password and open a session. Same answer for unknown user and wrong
    password, in about the same time; banned users learn why only with the right password."""
    await limit(ctx, ctx.settings.rate_limit_login_ip, "login-ip", ip)
    async with ctx.db.read() as conn:
        found = await user_store.by_login_with_hash(conn, login)
    user, stored = found if found is not None else (None, None)
    # Count failures per account (username and email are one account), per text otherwise.
    account_key = account_limit_key(login, user.id if user else None)
    await limit(
        ctx, ctx.settings.rate_limit_login_account, "login-account", account_key, count=False
    )
    ok = await ctx.hasher.verify(stored, password)
    if user is None or not ok:
        await ctx.limiter.hit(ctx.settings.rate_limit_login_account, "login-account", account_key)
        log.warning("auth failure: bad credentials ip=%s", ip)
        raise Unauthorized("wrong username or password", code="bad_credentials")
    if user.banned_at is not None:
        log.warning("auth failure: banned user=%s ip=%s", user.username, ip)
        reason = f": {user.ban_reason}" if user.ban_reason else ""
        raise Forbidden(f"this account is banned{reason}", code="banned")
    if stored is not None and ctx.hasher.needs_rehash(stored):
        new_hash = await ctx.hasher.hash(password)
        async with ctx.db.transaction() as conn:
            await user_store.set_password_txn(conn, user.id, new_hash)
    await ctx.limiter.clear(ctx.settings.rate_limit_login_account, "login-account", account_key)
    log.info("signed in user=%s", user.username)
    return await start_session(
        ctx, user.id, user.username, user.display_name, ip=ip, user_agent=user_agent
    )


async def refresh(ctx: Context, refresh_token: str, *, ip: str) -> SignedIn:
    """Rotate a refresh token. Presenting one that was already used revokes the session
    (all its tokens) and is audited; within ``refresh_grace`` seconds of its rotation it
    answers 409 instead, so two tabs refreshing at once do not sign the user out."""
    now = ctx.clock()
    token_hash = hash_secret(refresh_token)
    async with ctx.db.transaction() as conn:
        row = await session_store.lookup_refresh(conn, token_hash)
        if row is None:
            raise Unauthorized("refresh token is not valid; sign in again", code="refresh_invalid")
        auth = await session_store.get_with_user(conn, row.session_id)
        if auth is None or not auth.session.active(now):
            raise Unauthorized("this session has ended; sign in again", code="session_revoked")
        if auth.banned_at is not None:
            raise Forbidden("this account is banned", code="banned")
        fresh = row.used_at is None and await session_store.mark_refresh_used_txn(
            conn, token_hash, now
        )
        if not fresh:
            used_at = row.used_at or now
            if (now - used_at).total_seconds() <= ctx.settings.refresh_grace:
                raise Conflict(
                    "this refresh token was just rotated by another tab; retry with the new one",
                    code="refresh_race",
                )
            await session_store.revoke_txn(conn, row.session_id, now=now, reason="refresh_reuse")
            await audit.append_txn(
                conn,
                actor=auth.username,
                actor_id=auth.session.user_id,
                action="auth.refresh_reuse",
                target_type="session",
                target=row.session_id[:8],
                ip=ip,
                details={"used_at": used_at.isoformat()},
            )
            reused = True
        else:
            reused = False
            new_token = new_secret(32)
            await session_store.insert_refresh_txn(
                conn, hash_secret(new_token), row.session_id, now
            )
            await session_store.touch_txn(
                conn,
                row.session_id,
                now=now,
                expires_at=now + timedelta(seconds=ctx.settings.session_ttl),
                ip=ip,
            )
    if reused:  # raised after the commit, so the revocation and audit entry stay
        log.warning("refresh token reuse: session revoked user=%s ip=%s", auth.username, ip)
        await notify.kick(
            ctx,
            auth.session.user_id,
            session_ids=[row.session_id],
            reason="session_revoked",
            message="this session was ended because its token was reused",
        )
        raise Unauthorized(
            "this refresh token was already used, so the session was ended to protect you; "
            "sign in again",
            code="refresh_reused",
        )
    user_id = auth.session.user_id
    return SignedIn(
        user_id=user_id,
        username=auth.username,
        display_name=auth.display_name,
        session_id=row.session_id,
        access_token=ctx.keys.issue_access(user_id, row.session_id, now=now.timestamp()),
        refresh_token=new_token,
        csrf_token=ctx.keys.issue_csrf(row.session_id),
        expires_in=ctx.settings.access_token_ttl,
    )


async def authenticate(
    ctx: Context, access_token: str, *, allow_expired: bool = False
) -> Principal:
    """The principal behind an access token, after checking its session in the database."""
    claims = ctx.keys.verify_access(access_token, allow_expired=allow_expired)
    async with ctx.db.read() as conn:
        auth = await session_store.get_with_user(conn, claims.session_id)
        if auth is None or auth.session.user_id != claims.user_id:
            raise Unauthorized("access token is not valid", code="token_invalid")
        if not auth.session.active(ctx.clock()):
            raise Unauthorized("this session has ended; sign in again", code="session_revoked")
        if auth.banned_at is not None:
            raise Forbidden("this account is banned", code="banned")
        roles = await user_store.roles_of(conn, claims.user_id)
        perms = await user_store.permissions_of(conn, claims.user_id)
    return Principal(
        user_id=claims.user_id,
        username=auth.username,
        display_name=auth.display_name,
        session_id=claims.session_id,
        roles=frozenset(roles | {"user"}),
        permissions=frozenset(perms),
    )


async def logout(ctx: Context, session_id: str) -> None:
    async with ctx.db.transaction() as conn:
        row = await session_store.get(conn, session_id)
        await session_store.revoke_txn(conn, session_id, now=ctx.clock(), reason="logout")
    if row is not None:
        await notify.kick(
            ctx, row.user_id, session_ids=[session_id], reason="logged_out", message="signed out"
        )


async def list_sessions(ctx: Context, principal: Principal) -> list[SessionRow]:
    async with ctx.db.read() as conn:
        return await session_store.active_for_user(conn, principal.user_id, ctx.clock())


async def revoke_session(ctx: Context, principal: Principal, session_id: str) -> None:
    """End one of the caller's own sessions; someone else's is "not found", never revealed."""
    now = ctx.clock()
    async with ctx.db.transaction() as conn:
        row = await session_store.get(conn, session_id)
        if row is None or row.user_id != principal.user_id or not row.active(now):
            raise NotFound("no such session", code="session_not_found")
        await session_store.revoke_txn(conn, session_id, now=now, reason="revoked_by_user")
    log.info("session revoked by its user user=%s", principal.username)
    await notify.kick(
        ctx,
        principal.user_id,
        session_ids=[session_id],
        reason="session_revoked",
        message="this device was signed out from another one",
    )


def session_expiry(ctx: Context, now: datetime) -> datetime:
    return now + timedelta(seconds=ctx.settings.session_ttl)


async def inactive_sessions(ctx: Context, session_ids: list[str]) -> set[str]:
    """Which of these sessions may no longer hold a socket (revoked, expired, banned)."""
    found: set[str] = set()
    for start in range(0, len(session_ids), 500):
        async with ctx.db.read() as conn:
            found |= await session_store.inactive_among(
                conn, session_ids[start : start + 500], ctx.clock()
            )
    return found
