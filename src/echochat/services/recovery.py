"""Password reset (email link or PIN) and the first-admin claim.

Where the policy lives: a reset link carries 256 random bits, is stored hashed, lives 30
minutes and works once. The PIN (``reset_pin_length`` digits, default 6) is stored as an
HMAC under a server key, lives 10 minutes, dies after 5 wrong tries, and is accepted only
together with the handle given to the browser that asked for it (an HttpOnly cookie, or
``reset_handle`` for API clients). Asking answers the same whether or not the account
exists. A reset ends every session of the user and tells them by email.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from datetime import timedelta

from echochat.domain import accounts as rules
from echochat.domain.errors import Conflict, Forbidden, Unauthorized
from echochat.integrations.email import Email
from echochat.services import accounts, notify
from echochat.services.context import Context
from echochat.services.mail import send_later
from echochat.services.tokens import hash_secret, new_secret
from echochat.store import audit, recovery
from echochat.store import sessions as session_store
from echochat.store import users as user_store

__all__ = [
    "LINK_TTL",
    "PIN_TRIES",
    "PIN_TTL",
    "claim_admin",
    "claim_is_valid",
    "forgot",
    "new_admin_claim",
    "reset_with_pin",
    "reset_with_token",
]

log = logging.getLogger("echochat.auth")

LINK_TTL = timedelta(minutes=30)
PIN_TTL = timedelta(minutes=10)
PIN_TRIES = 5


async def forgot(ctx: Context, login: str, *, ip: str) -> str:
    """Start a reset for the account named by username or email; return the reset handle.

    A handle is returned whether or not the account exists (it then matches nothing)."""
    await accounts.limit(ctx, ctx.settings.rate_limit_reset_ip, "reset-ip", ip)
    async with ctx.db.read() as conn:
        found = await user_store.by_login_with_hash(conn, login)
    user = found[0] if found else None
    key = accounts.account_limit_key(login, user.id if user else None)
    await accounts.limit(ctx, ctx.settings.rate_limit_reset_account, "reset-account", key)
    handle = new_secret(32)
    if user is None or not user.email or user.banned_at is not None:
        log.info("password reset asked for an unknown or email-less account ip=%s", ip)
        return handle
    now = ctx.clock()
    reset_id = new_secret(32)
    token = new_secret(32)
    pin = "".join(secrets.choice("0123456789") for _ in range(ctx.settings.reset_pin_length))
    async with ctx.db.transaction() as conn:
        await recovery.insert_reset_txn(
            conn,
            reset_id=reset_id,
            user_id=user.id,
            token_hash=hash_secret(token),
            binding_hash=hash_secret(handle),
            pin_hash=ctx.keys.pin_hash(reset_id, pin),
            now=now,
            link_expires_at=now + LINK_TTL,
            pin_expires_at=now + PIN_TTL,
            ip=ip,
        )
    link = f"{ctx.settings.public_url}/reset?token={token}"
    send_later(
        ctx,
        Email(
            to=user.email,
            subject="Reset your EchoChat password",
            body=(
                f"Hi {user.display_name},\n\n"
                f"Someone (hopefully you) asked to reset the password of {user.username} "
                f"on {ctx.settings.public_url}.\n\n"
                f"Open this link within 30 minutes to choose a new password:\n{link}\n\n"
                f"Or type this PIN in the browser where you asked, within 10 minutes:\n"
                f"    {pin}\n\n"
                "If you did not ask, ignore this email: your password stays as it is.\n"
            ),
        ),
    )
    log.info("password reset started user=%s ip=%s", user.username, ip)
    return handle


async def reset_with_token(ctx: Context, token: str, new_password: str, *, ip: str) -> None:
    async with ctx.db.read() as conn:
        row = await recovery.reset_by(conn, token_hash=hash_secret(token))
    now = ctx.clock()
    if row is None or row.used_at is not None or row.link_expires_at <= now:
        raise Unauthorized(
            "this reset link is invalid, used or expired; ask for a new one",
            code="reset_invalid",
        )
    await _finish(ctx, row.id, row.user_id, new_password, ip=ip, how="link")


async def reset_with_pin(
    ctx: Context, handle: str, pin: str, new_password: str, *, ip: str
) -> None:
    """Each try is counted *before* the PIN is compared, atomically, so guesses sent in
    parallel get no more than ``PIN_TRIES`` comparisons between them."""
    async with ctx.db.read() as conn:
        row = await recovery.reset_by(conn, binding_hash=hash_secret(handle))
    now = ctx.clock()
    if row is not None and row.pin_attempts >= PIN_TRIES:
        raise Forbidden("too many wrong PINs; ask for a new reset", code="reset_locked")
    if row is None or row.used_at is not None or row.pin_expires_at <= now:
        raise Unauthorized(
            "this PIN is invalid or expired; ask for a new reset", code="reset_invalid"
        )
    async with ctx.db.read() as conn:
        user = await user_store.by_id(conn, row.user_id)
    if user is not None:
        rules.check_password(new_password, user.username)  # before spending a try
    async with ctx.db.transaction() as conn:
        tries = await recovery.take_pin_try_txn(conn, row.id, PIN_TRIES)
    if tries is None:
        raise Forbidden("too many wrong PINs; ask for a new reset", code="reset_locked")
    if not hmac.compare_digest(ctx.keys.pin_hash(row.id, pin.strip()), row.pin_hash):
        log.warning("wrong reset PIN tries=%d ip=%s", tries, ip)
        left = PIN_TRIES - tries
        if left <= 0:
            async with ctx.db.transaction() as conn:
                await recovery.use_reset_txn(conn, row.id, now)
            raise Forbidden("too many wrong PINs; ask for a new reset", code="reset_locked")
        raise Unauthorized(
            f"wrong PIN; {left} tries left", code="pin_wrong", details={"tries_left": left}
        )
    await _finish(ctx, row.id, row.user_id, new_password, ip=ip, how="pin")


async def _finish(
    ctx: Context, reset_id: str, user_id: int, new_password: str, *, ip: str, how: str
) -> None:
    async with ctx.db.read() as conn:
        user = await user_store.by_id(conn, user_id)
    if user is None:
        raise Unauthorized("this reset is no longer valid", code="reset_invalid")
    rules.check_password(new_password, user.username)
    password_hash = await ctx.hasher.hash(new_password)
    now = ctx.clock()
    async with ctx.db.transaction() as conn:
        if not await recovery.use_reset_txn(conn, reset_id, now):
            raise Unauthorized("this reset was already used", code="reset_invalid")
        await recovery.invalidate_resets_txn(conn, user_id, now)
        await user_store.set_password_txn(conn, user_id, password_hash)
        ended = await session_store.revoke_all_for_user_txn(
            conn, user_id, now=now, reason="password_reset"
        )
        await audit.append_txn(
            conn,
            actor=user.username,
            actor_id=user_id,
            action="auth.password_reset",
            target_type="user",
            target=user.username,
            ip=ip,
            details={"via": how, "sessions_ended": len(ended)},
        )
    log.info("password reset done user=%s via=%s", user.username, how)
    await notify.kick(
        ctx,
        user_id,
        session_ids=None,
        reason="password_reset",
        message="your password was changed; sign in again",
    )
    if user.email:
        send_later(
            ctx,
            Email(
                to=user.email,
                subject="Your EchoChat password was changed",
                body=(
                    f"Hi {user.display_name},\n\n"
                    f"The password of {user.username} on {ctx.settings.public_url} was just "
                    "changed, and every signed-in device was signed out.\n\n"
                    "If this was not you, reset your password now and tell your admin.\n"
                ),
            ),
        )


# --- first admin -------------------------------------------------------------------------


async def new_admin_claim(ctx: Context) -> str | None:
    """While no admin exists, a fresh one-time claim token. Several may be valid at once
    (each server process prints one); the first one used ends them all."""
    now = ctx.clock()
    async with ctx.db.transaction() as conn:
        if await user_store.count_with_role(conn, "admin", active_only=False):
            return None
        token = new_secret(32)
        await recovery.insert_claim_txn(
            conn, hash_secret(token), now, now + timedelta(seconds=ctx.settings.admin_claim_ttl)
        )
    return token


async def claim_is_valid(ctx: Context, token: str) -> bool:
    async with ctx.db.read() as conn:
        return await recovery.claim_valid(conn, hash_secret(token), ctx.clock())


async def claim_admin(
    ctx: Context,
    token: str,
    *,
    username: str,
    password: str,
    email: str | None,
    display_name: str | None,
    ip: str,
    user_agent: str,
) -> accounts.SignedIn:
    """Create the first account with the admin role, spending the claim token."""
    name = rules.check_username(username)
    mail = rules.check_email(email)
    shown = rules.check_display_name(display_name, name)
    rules.check_password(password, name)
    if not await claim_is_valid(ctx, token):
        raise Unauthorized("this claim link is invalid, used or expired", code="claim_invalid")
    password_hash = await ctx.hasher.hash(password)
    now = ctx.clock()
    async with ctx.db.transaction() as conn:
        await user_store.lock_role_txn(conn, "admin")
        if await user_store.count_with_role(conn, "admin", active_only=False):
            raise Conflict("an admin already exists", code="admin_exists")
        user_id = await user_store.insert_user_txn(
            conn, username=name, display_name=shown, email=mail, password_hash=password_hash
        )
        if not await recovery.use_claim_txn(conn, hash_secret(token), now, user_id):
            raise Unauthorized("this claim link is invalid, used or expired", code="claim_invalid")
        await user_store.assign_role_txn(conn, user_id, "admin", "claim-link")
        await recovery.invalidate_claims_txn(conn, now)
        await audit.append_txn(
            conn,
            actor=name,
            actor_id=user_id,
            action="admin.claimed",
            target_type="user",
            target=name,
            ip=ip,
            details={},
        )
    log.info("first admin claimed user=%s ip=%s", name, ip)
    return await accounts.start_session(ctx, user_id, name, shown, ip=ip, user_agent=user_agent)
