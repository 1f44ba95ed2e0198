"""Outgoing email: the console backend (default) and SMTP (aiosmtplib).

The console backend never logs a body (bodies hold reset links and PINs): it logs who and
what, and hands the whole message to a sink, which ``app.py`` wires to the outbox table so
an admin on a laptop without SMTP can still read it (``echochat admin outbox``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Literal, Protocol

import aiosmtplib

__all__ = ["ConsoleMailer", "Email", "Mailer", "MailerError", "SmtpMailer"]

log = logging.getLogger("echochat.email")


@dataclass(frozen=True)
class Email:
    to: str
    subject: str
    body: str


class MailerError(Exception):
    """Sending failed; the message says why without secrets."""


class Mailer(Protocol):
    name: str

    async def send(self, email: Email) -> None: ...


class ConsoleMailer:
    name = "console"

    def __init__(self, sink: Callable[[Email], Awaitable[None]]) -> None:
        self._sink = sink

    async def send(self, email: Email) -> None:
        await self._sink(email)
        log.info("email kept in the outbox to=%s subject=%r", email.to, email.subject)


class SmtpMailer:
    name = "smtp"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        security: Literal["starttls", "tls", "none"] = "starttls",
        timeout: float = 20.0,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.username = username
        self.password = password
        self.security = security
        self.timeout = timeout

    def build(self, email: Email) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = email.to
        message["Subject"] = email.subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain="echochat")
        message.set_content(email.body)
        return message

    async def send(self, email: Email) -> None:
        try:
            await aiosmtplib.send(
                self.build(email),
                hostname=self.host,
                port=self.port,
                username=self.username,
                password=self.password,
                use_tls=self.security == "tls",
                start_tls=self.security == "starttls",
                timeout=self.timeout,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise MailerError(
                f"SMTP {self.host}:{self.port} refused or failed: {type(exc).__name__}: "
                f"{str(exc)[:200]}"
            ) from exc
        log.info("email sent to=%s subject=%r via smtp %s", email.to, email.subject, self.host)
