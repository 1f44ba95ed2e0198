"""Outgoing email over real SMTP: aiosmtpd listening on a free loopback port is the peer.

No external service is needed; these sit with the integration suites because they talk a real
protocol to a real server. Delivery is awaited on an event the server's handler sets.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import socket
from collections.abc import AsyncIterator
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from echochat.integrations.email import Email, MailerError, SmtpMailer
from tests.unit.test_auth_api import API, MakeSettings, open_site

pytestmark = pytest.mark.integration

SENDER = "EchoChat <echochat@chat.example.org>"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Inbox:
    """An aiosmtpd handler: keeps each message and wakes the test's event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.reply = "250 OK"
        self.messages: list[tuple[str, list[str], EmailMessage]] = []
        self.arrived = asyncio.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        self.loop.call_soon_threadsafe(self.arrived.set)
        return self.reply

    async def next_message(self) -> tuple[str, list[str], EmailMessage]:
        async with asyncio.timeout(10):
            await self.arrived.wait()
        self.arrived.clear()
        return self.messages[-1]


@pytest.fixture
async def smtp_server() -> AsyncIterator[tuple[Inbox, int]]:
    """An SMTP server on a free loopback port (in aiosmtpd's own thread) and its inbox."""
    inbox = Inbox(asyncio.get_running_loop())
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def mailer(port: int, **kwargs: Any) -> SmtpMailer:
    return SmtpMailer(
        host="127.0.0.1", port=port, sender=SENDER, security="none", timeout=5, **kwargs
    )


async def test_smtp_mailer_delivers(smtp_server: tuple[Inbox, int]) -> None:
    inbox, port = smtp_server
    body = "Hello Alice,\n\nÜmlauts and a long line " + "x" * 200 + "\n"
    await mailer(port).send(Email(to="alice@example.org", subject="Hi there", body=body))
    mail_from, rcpt_tos, message = await inbox.next_message()
    assert mail_from == "echochat@chat.example.org"
    assert rcpt_tos == ["alice@example.org"]
    assert message["From"] == SENDER
    assert message["To"] == "alice@example.org"
    assert message["Subject"] == "Hi there"
    assert message["Date"]
    assert message["Message-ID"]
    assert message.get_content().replace("\r\n", "\n") == body


async def test_smtp_refusal_is_a_mailer_error(smtp_server: tuple[Inbox, int]) -> None:
    server, port = smtp_server
    server.reply = "554 5.7.1 rejected for testing"
    with pytest.raises(MailerError) as info:
        await mailer(port).send(Email(to="alice@example.org", subject="s", body="secret body"))
    assert f"127.0.0.1:{port}" in str(info.value)
    assert "secret body" not in str(info.value)


async def test_unreachable_smtp_is_a_mailer_error() -> None:
    port = free_port()  # nobody listens there
    with pytest.raises(MailerError) as info:
        await mailer(port).send(Email(to="alice@example.org", subject="s", body="b"))
    assert f"127.0.0.1:{port}" in str(info.value)


async def test_forgot_password_mail_goes_out_over_smtp(
    make_settings: MakeSettings, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, port = smtp_server
    async with open_site(
        make_settings,
        email_backend="smtp",
        email_from=SENDER,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="none",
        smtp_timeout=5,
    ) as site:
        await site.register("alice", email="alice@example.org")
        response = await site.client().post(
            f"{API}/auth/password/forgot", json={"login": "alice"}, headers={"Host": "evil.example"}
        )
        assert response.status_code == 202, response.text
        _, rcpt_tos, message = await inbox.next_message()
        assert rcpt_tos == ["alice@example.org"]
        assert message["Subject"] == "Reset your EchoChat password"
        assert message["From"] == SENDER
        text = message.get_content()
        assert f"{site.settings.public_url}/reset?token=" in text
        assert "evil.example" not in text
        assert await site.outbox() == []  # the console outbox is not used with SMTP


async def test_unreachable_smtp_does_not_fail_the_request(
    make_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()  # nobody listens there
    async with open_site(
        make_settings,
        email_backend="smtp",
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="none",
        smtp_timeout=5,
    ) as site:
        await site.register("alice", email="alice@example.org")
        with caplog.at_level(logging.INFO, logger="echochat"):
            response = await site.client().post(
                f"{API}/auth/password/forgot", json={"login": "alice"}
            )
            assert response.status_code == 202, response.text
            assert response.json()["status"] == "sent_if_account_exists"
            await site.ctx.drain()
        failures = [
            r for r in caplog.records if r.name == "echochat.email" and r.levelno == logging.ERROR
        ]
        assert len(failures) == 1, caplog.text
        assert f"127.0.0.1:{port}" in failures[0].getMessage()
        assert "reset?token=" not in caplog.text  # no secrets in the log
        assert "background task" not in caplog.text  # handled, not an escaped exception
