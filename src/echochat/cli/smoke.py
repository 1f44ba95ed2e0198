"""``echochat smoke --url URL``: prove a running server end to end, from the outside.

Through the Python SDK only (HTTP and ``/ws``, like any client), it registers two throwaway
users (``smoke-<random>``), sets up their end-to-end encryption keys, exchanges encrypted
direct messages both ways, checks the idempotent retry, receipts, offline delivery (one user
disconnects, a message is sent, the user comes back and gets ``offline.summary`` and the
message), decrypted history and BUZZ!, and prints a table of the steps with their timings.
It exits 1 at the first failure, saying what to do next.

The throwaway users stay on the server (there is no account deletion yet); their names are
printed so that an admin can ban them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import typer
from rich.table import Table

from echochat import __version__
from echochat.cli.common import console, err_console, guarded
from echochat.client import (
    BuzzEvent,
    DirectMessage,
    DmReceiptEvent,
    EchoChatClient,
    EchoChatError,
    Event,
    ForbiddenError,
    Messenger,
    NetworkError,
    OfflineSummaryEvent,
    OpError,
    RateLimitedError,
)
from echochat.client.e2ee import E2EEError

__all__ = ["smoke"]

T = TypeVar("T")
Item = Event | DirectMessage


class StepFailed(Exception):
    """A step's check failed: ``detail`` says what, ``hint`` what to do next."""

    def __init__(self, detail: str, hint: str = "") -> None:
        super().__init__(detail)
        self.detail = detail
        self.hint = hint


@dataclass
class Inbox:
    """Everything one messenger yields, collected by one task; steps wait for an item."""

    messenger: Messenger
    items: list[Item] = field(default_factory=list)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _task: asyncio.Task[None] | None = None
    error: BaseException | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        try:
            async for item in self.messenger.events():
                async with self._changed:
                    self.items.append(item)
                    self._changed.notify_all()
        except Exception as exc:  # the stream ended badly: wake the waiters with it
            async with self._changed:
                self.error = exc
                self._changed.notify_all()

    async def wait(self, what: str, match: Callable[[Item], bool], timeout: float) -> Item:
        """The first item (already received or still to come) for which ``match`` holds."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                while True:
                    for item in self.items:
                        if match(item):
                            return item
                    if self.error is not None:
                        raise StepFailed(f"{what}: the connection ended ({self.error})")
                    await self._changed.wait()
        except TimeoutError:
            raise StepFailed(
                f"{what} did not arrive within {timeout:g} s",
                "the server accepted the request but did not deliver the event: look at its "
                "log; with several processes, check that they share the same Redis",
            ) from None

    async def stop(self) -> None:
        """Close the messenger; its event stream then ends, and so does the collector."""
        await self.messenger.close()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=5)
            if not done:
                self._task.cancel()
                await asyncio.wait({self._task})


@dataclass
class Step:
    name: str
    status: str  # PASS, FAIL, SKIP
    seconds: float
    detail: str


@dataclass
class Smoke:
    url: str
    timeout: float
    steps: list[Step] = field(default_factory=list)
    hint: str = ""
    created: list[str] = field(default_factory=list)
    failed: bool = False

    async def step(self, name: str, action: Callable[[], Awaitable[T]]) -> T | None:
        """Run one step (unless an earlier one failed), timed, its failure explained."""
        if self.failed:
            self.steps.append(Step(name, "SKIP", 0.0, "after an earlier failure"))
            return None
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout * 3):
                result = await action()
        except StepFailed as exc:
            self._fail(name, started, exc.detail, exc.hint)
            return None
        except TimeoutError:
            self._fail(
                name,
                started,
                f"no answer within {self.timeout * 3:g} s",
                "the server is overloaded or stuck: look at its log",
            )
            return None
        except Exception as exc:
            detail, hint = explain(exc, self.url)
            self._fail(name, started, detail, hint)
            return None
        seconds = time.perf_counter() - started
        detail = result if isinstance(result, str) else ""
        self.steps.append(Step(name, "PASS", seconds, detail))
        return result

    def _fail(self, name: str, started: float, detail: str, hint: str) -> None:
        self.failed = True
        self.hint = hint
        self.steps.append(Step(name, "FAIL", time.perf_counter() - started, detail))


def explain(exc: BaseException, url: str) -> tuple[str, str]:
    """What went wrong, for people, and what to do about it."""
    if isinstance(exc, NetworkError):
        return (
            f"no answer from {url}: {exc.message}",
            f"check that the server runs and that {url} is its public URL (`echochat serve` "
            "prints it); behind a proxy, check that it forwards WebSocket upgrades on /ws",
        )
    if isinstance(exc, OpError) and exc.code == "unknown_op":
        return (
            f"the server does not know the op {exc.op!r}",
            f"the server is older than this client (echochat {__version__}): upgrade it",
        )
    if isinstance(exc, RateLimitedError):
        wait = f"{exc.retry_after} s" if exc.retry_after is not None else "a while"
        return (
            f"rate-limited: {exc.message}",
            f"wait {wait} and run again; on a test server, raise the limit named above "
            "(e.g. ECHOCHAT_RATE_LIMIT_REGISTER_IP)",
        )
    if isinstance(exc, E2EEError):
        return (
            f"end-to-end encryption check failed ({exc.code}): {exc.message}",
            "an envelope did not verify: the server (or a proxy) changed what it relayed, "
            "or this client and the server disagree on docs/e2ee.md; report it with the log",
        )
    if isinstance(exc, EchoChatError):
        return (str(exc), "see the server's log for this request")
    return (f"{type(exc).__name__}: {exc}", "this is a bug in `echochat smoke`: report it")


# --- the steps -----------------------------------------------------------------------------


async def check_server(url: str, timeout: float) -> str:
    try:
        async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=timeout) as http:
            health = await http.get("/healthz")
            spec = await http.get("/api/v1/openapi.json")
    except httpx.HTTPError as exc:
        raise NetworkError(0, "network_error", f"{type(exc).__name__}: {exc}") from exc
    if health.status_code != 200:
        raise StepFailed(
            f"GET /healthz answered HTTP {health.status_code}",
            f"{url} does not look like an EchoChat server: check the URL",
        )
    try:
        info: dict[str, Any] = spec.json()
    except ValueError:
        info = {}
    version = str(info.get("info", {}).get("version", "unknown"))
    if "/api/v1/dm/{username}/messages" not in info.get("paths", {}):
        raise StepFailed(
            f"the server (echochat {version}) has no direct messages",
            f"upgrade the server to echochat {__version__} (this client's version)",
        )
    note = "" if version == __version__ else f" (this client: {__version__})"
    return f"echochat {version}{note}"


async def register(client: EchoChatClient, username: str, password: str) -> str:
    try:
        await client.register(username, password, display_name=f"Smoke test {username[-6:]}")
    except ForbiddenError as exc:
        if exc.code == "registration_closed":
            raise StepFailed(
                "registration is closed on this server",
                "an admin can open registration in the admin settings while the smoke test "
                "runs, then close it again",
            ) from exc
        raise
    except RateLimitedError as exc:
        wait = f"{exc.retry_after} s" if exc.retry_after is not None else "a while"
        raise StepFailed(
            f"registration is rate-limited for this IP ({exc.message})",
            f"wait {wait} and run again, or raise rate_limit_register_ip on a test server",
        ) from exc
    return f"created user {username}"


async def run_smoke(url: str, timeout: float) -> Smoke:
    smoke = Smoke(url, timeout)
    tag = secrets.token_hex(4)
    names = (f"smoke-{tag}-a", f"smoke-{tag}-b")
    password = secrets.token_urlsafe(24)
    a_client = EchoChatClient(url, timeout=timeout)
    b_client = EchoChatClient(url, timeout=timeout)
    inboxes: list[Inbox] = []
    a_name, b_name = names
    try:
        await smoke.step("server reachable, version", lambda: check_server(url, timeout))
        for client, name in ((a_client, a_name), (b_client, b_name)):
            if await smoke.step(
                f"register {name}", functools.partial(register, client, name, password)
            ):
                smoke.created.append(name)

        async def keys_and_sockets() -> str:
            for client in (a_client, b_client):
                messenger = await Messenger.start(client, label="echochat smoke")
                inbox = Inbox(messenger)
                inbox.start()
                inboxes.append(inbox)
            return "devices published, both connected"

        await smoke.step("E2EE keys and sockets", keys_and_sockets)
        if smoke.failed:
            for name in (
                f"DM {a_name} -> {b_name}",
                f"DM {b_name} -> {a_name}",
                "retry is idempotent",
                "delivered and read receipts",
                f"offline delivery to {b_name}",
                "history, decrypted",
                "BUZZ!",
            ):
                smoke.steps.append(Step(name, "SKIP", 0.0, "after an earlier failure"))
            return smoke
        a, b = inboxes

        async def exchange(sender: Inbox, receiver: Inbox) -> str:
            text = f"hello {secrets.token_hex(6)} \N{GRINNING FACE}"
            sent = await sender.messenger.send(receiver.messenger.username, text)
            got = await receiver.wait(
                "the message",
                lambda i: isinstance(i, DirectMessage) and i.id == sent.id,
                timeout,
            )
            assert isinstance(got, DirectMessage)
            if got.error is not None:
                raise got.error
            if got.text != text or got.sender != sender.messenger.username:
                raise StepFailed(
                    f"message {sent.id} arrived altered: {got.text!r} from {got.sender}",
                    "the decrypted text differs from what was sent: report it",
                )
            return f"id {sent.id}, decrypted and verified"

        await smoke.step(f"DM {a_name} -> {b_name}", lambda: exchange(a, b))
        await smoke.step(f"DM {b_name} -> {a_name}", lambda: exchange(b, a))

        async def retry() -> str:
            envelope = await a.messenger.seal(b_name, "sent twice, stored once")
            rt = a.messenger.connection
            first = await rt.send_dm(b_name, envelope)
            second = await rt.send_dm(b_name, envelope)
            if first.duplicate or not second.duplicate or second.message.id != first.message.id:
                raise StepFailed(
                    f"a retry with the same client_id gave id {second.message.id} "
                    f"(duplicate={second.duplicate}), the first {first.message.id}",
                    "the server must answer a retry with the original message: report it",
                )
            return f"retry answered the original id {first.message.id}"

        await smoke.step("retry is idempotent", retry)

        async def receipts() -> str:
            last = max(i.id for i in b.items if isinstance(i, DirectMessage) and not i.outgoing)
            await a.wait(
                "the delivered receipt",
                lambda i: (
                    isinstance(i, DmReceiptEvent)
                    and i.kind == "delivered"
                    and i.reader == b_name
                    and i.upto >= last
                ),
                timeout,
            )
            await b.messenger.mark_read(a_name)
            await a.wait(
                "the read receipt",
                lambda i: (
                    isinstance(i, DmReceiptEvent)
                    and i.kind == "read"
                    and i.reader == b_name
                    and i.upto >= last
                ),
                timeout,
            )
            return f"delivered and read up to {last}"

        await smoke.step("delivered and read receipts", receipts)

        async def offline() -> str:
            keyring, device, cursor = b.messenger.keyring, b.messenger.device_id, b.messenger.cursor
            await b.stop()
            inboxes.remove(b)
            text = f"while you were away {secrets.token_hex(4)}"
            sent = await a.messenger.send(b_name, text)
            back = Inbox(
                await Messenger.start(
                    b_client, keyring=keyring, device_id=device, cursor=cursor, label="smoke"
                )
            )
            back.start()
            inboxes.append(back)
            summary = await back.wait(
                "offline.summary", lambda i: isinstance(i, OfflineSummaryEvent), timeout
            )
            assert isinstance(summary, OfflineSummaryEvent)
            count = {s.username: s.count for s in summary.senders}.get(a_name, 0)
            if count < 1:
                raise StepFailed(
                    f"offline.summary counted {count} message(s) from {a_name}",
                    "the offline count is wrong: report it",
                )
            got = await back.wait(
                "the offline message",
                lambda i: isinstance(i, DirectMessage) and i.id == sent.id,
                timeout,
            )
            assert isinstance(got, DirectMessage)
            if got.error is not None:
                raise got.error
            if got.text != text:
                raise StepFailed(f"the offline message arrived as {got.text!r}")
            return f"summary counted {count}, message {sent.id} replayed"

        await smoke.step(f"offline delivery to {b_name}", offline)

        async def history() -> str:
            page = await inboxes[-1].messenger.history(a_name, limit=50)
            bad = [m for m in page.messages if m.error is not None]
            if bad:
                raise bad[0].error or StepFailed("undecryptable history")
            ids = [m.id for m in page.messages]
            if ids != sorted(ids) or len(ids) < 4:
                raise StepFailed(f"history ids {ids}: expected at least 4, ascending")
            return f"{len(ids)} messages decrypted, in order"

        await smoke.step("history, decrypted", history)

        async def buzz() -> str:
            await a.messenger.buzz(b_name)
            await inboxes[-1].wait(
                "the BUZZ!",
                lambda i: isinstance(i, BuzzEvent) and i.username == a_name,
                timeout,
            )
            return "received"

        await smoke.step("BUZZ!", buzz)
        return smoke
    finally:
        for inbox in inboxes:
            with contextlib.suppress(Exception):
                await inbox.stop()
        for client in (a_client, b_client):
            with contextlib.suppress(Exception):
                await client.logout()
            await client.aclose()


def _report(smoke: Smoke) -> None:
    table = Table(title=f"echochat smoke {smoke.url}")
    table.add_column("#", justify="right")
    table.add_column("step")
    table.add_column("result")
    table.add_column("time", justify="right")
    table.add_column("detail")
    colours = {"PASS": "green", "FAIL": "bold red", "SKIP": "dim"}
    for number, step in enumerate(smoke.steps, 1):
        took = f"{step.seconds * 1000:.0f} ms" if step.status != "SKIP" else ""
        table.add_row(
            str(number),
            step.name,
            f"[{colours[step.status]}]{step.status}[/]",
            took,
            step.detail,
        )
    console.print(table)
    if smoke.created:
        console.print(
            f"Created throwaway users: {', '.join(smoke.created)} (signed out; they stay on "
            "the server: an admin may ban them).",
            soft_wrap=True,
        )


@guarded
def smoke(
    url: str = typer.Option(
        ..., "--url", help="The server's public URL, e.g. http://127.0.0.1:8000"
    ),
    timeout: float = typer.Option(10.0, help="Seconds to wait for each answer or event."),
) -> None:
    """Check a running server end to end: two throwaway users exchange encrypted DMs."""
    result = asyncio.run(run_smoke(url, timeout))
    _report(result)
    if result.failed:
        failed = next(s for s in result.steps if s.status == "FAIL")
        err_console.print(f"[bold red]smoke test failed[/] at “{failed.name}”: {failed.detail}")
        if result.hint:
            err_console.print(f"next: {result.hint}", soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"[bold green]all {len(result.steps)} steps passed[/]")
