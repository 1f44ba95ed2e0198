"""Sending email from services: after the response, never failing the request."""

from __future__ import annotations

import logging

from echochat.integrations.email import Email, MailerError
from echochat.services.context import Context
from echochat.store import Database, outbox

__all__ = ["keep_in_outbox", "send_later"]

log = logging.getLogger("echochat.email")


def send_later(ctx: Context, email: Email) -> None:
    """Queue ``email`` to go out in the background (so timing reveals nothing either)."""

    async def go() -> None:
        try:
            await ctx.mailer.send(email)
        except MailerError as exc:
            log.error("email to %s failed: %s", email.to, exc)

    ctx.spawn(go(), name="send-email")


async def keep_in_outbox(db: Database, email: Email) -> None:
    """The console backend's sink: keep the whole message for the admin to read."""
    async with db.transaction() as conn:
        await outbox.append_txn(conn, to=email.to, subject=email.subject, body=email.body)
