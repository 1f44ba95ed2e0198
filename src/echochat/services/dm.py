"""Direct messages: send, history, conversations, receipts, BUZZ!, the offline summary, the
replay on reconnect, and retention (docs/protocol.md, "Direct messages").

Where the policy lives:
- who may reach whom: :func:`_peer` (a user who blocked you looks missing, 404
  ``user_not_found``; one you blocked is 403 ``blocked``; anyone else may be messaged,
  buddy or not, as on Yahoo);
- what a send must satisfy, in the documented order: :func:`send`;
- watermarks only move forward and never past the peer's newest message: :func:`acknowledge`.

Bodies are end-to-end encrypted: the server checks an envelope's shape, conversation,
sender, sending device and recipients, stores it as sent, and never reads its content.

Writes (messages and receipts) go through one :class:`_Writer` per database: a group
commit. While one transaction commits, new writes queue; the next transaction takes them
all, so a burst costs one commit (one fsync on SQLite) instead of one each. Each caller's
future resolves only after the commit (``ok`` only after commit), then the events go out in
commit order. SQLite's ``synchronous=FULL`` fsync takes ~2 ms here, which alone caps serial
commits at ~500 a second; the issue's bar is 1,000 DMs a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Literal

import orjson
from pydantic import BaseModel

from echochat.domain.accounts import USERNAME_RE
from echochat.domain.e2ee import EnvelopeParts, parse_envelope
from echochat.domain.errors import (
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    Unavailable,
    server_stopping,
)
from echochat.domain.events import (
    BuzzData,
    BuzzEvent,
    DmMessage,
    DmReceiptData,
    OfflineSender,
    OfflineSummaryData,
    OfflineSummaryEvent,
)
from echochat.services import notify
from echochat.services.accounts import Principal, limit
from echochat.services.batching import commit_each, fail, fail_all, resolve
from echochat.services.context import Context
from echochat.store import Database, dm_batch
from echochat.store import messages as store
from echochat.store.messages import ConversationRow, MessageRow, NewMessage, PeerRow

__all__ = [
    "HISTORY_LIMIT",
    "HISTORY_MAX",
    "Conversation",
    "History",
    "ReceiptKind",
    "Sent",
    "acknowledge",
    "buzz",
    "conversations",
    "delete_for_report",
    "dm_conv",
    "history",
    "offline_summary",
    "public",
    "purge_expired",
    "replay",
    "retention_loop",
    "send",
    "stop_writer",
]

log = logging.getLogger("echochat.dm")

HISTORY_LIMIT = 50
HISTORY_MAX = 200
MAX_BATCH = 256  # writes per group commit (64 kept up with ~720 DMs/s; docs/performance.md)
PURGE_BATCH = 1000

ReceiptKind = Literal["delivered", "read"]


@dataclass(frozen=True)
class Sent:
    message: DmMessage
    duplicate: bool
    frame: bytes = b""  # a new message's ``dm.message`` event frame, ready to publish


@dataclass(frozen=True)
class History:
    messages: list[DmMessage]
    has_more: bool
    peer_delivered_upto: int
    peer_read_upto: int
    my_read_upto: int


@dataclass(frozen=True)
class Conversation:
    username: str
    display_name: str
    conv: str
    last_message_id: int
    last_message_at: str
    unread: int
    offline: int
    my_delivered_upto: int
    my_read_upto: int
    peer_delivered_upto: int
    peer_read_upto: int


def dm_conv(a: str, b: str) -> str:
    first, second = sorted((a, b))
    return f"dm:{first}:{second}"


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="microseconds")


def public(row: MessageRow) -> DmMessage:
    return DmMessage(
        id=row.id,
        conv=row.conv,
        sender=row.sender,
        recipient=row.recipient,
        sender_device=row.sender_device,
        client_id=row.client_id,
        created_at=_iso(row.created_at),
        envelope=orjson.loads(row.envelope),
    )


# --- who may reach whom ----------------------------------------------------------------------


def _reachable(principal: Principal, peer: PeerRow | None, username: str) -> PeerRow:
    """404 for a missing user or one who blocked us (indistinguishable), 403 if we blocked
    them, 422 for ourselves."""
    if peer is None or peer.blocked_me:
        raise NotFound(f"no user named {username!r}", code="user_not_found")
    if peer.blocked_by_me:
        raise Forbidden(f"you blocked {peer.username}; unblock them first", code="blocked")
    if peer.id == principal.user_id:
        raise InvalidInput("that is you", code="invalid_input", details={"field": "to"})
    return peer


def _not_muted(until: datetime | None, now: datetime) -> None:
    """403 ``muted`` while a server-wide mute (a moderator's) lasts."""
    if until is not None and until > now:
        raise Forbidden(
            f"you are muted on this server until {until.isoformat(timespec='minutes')}",
            code="muted",
            details={"until": until.isoformat()},
        )


async def _peer(ctx: Context, principal: Principal, username: str) -> PeerRow:
    found = await store.run_read(
        ctx.db, lambda conn: store.peer_for(conn, principal.user_id, username, None)
    )
    return _reachable(principal, found, username)


# --- the group commit ------------------------------------------------------------------------


def _loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


@dataclass(eq=False)
class _Ack:
    """A receipt: move the reader's ``kind`` watermark for ``to``'s messages to ``upto``.
    The receipts of a batch are written together (:func:`store.advance_many_txn`): per
    conversation only the highest ``upto`` of each kind matters."""

    principal: Principal
    to: str  # as asked: stripped, lower-cased
    kind: ReceiptKind
    upto: int
    future: asyncio.Future[int] = field(default_factory=lambda: _loop().create_future())


@dataclass(frozen=True)
class _Receipt:
    """What an accepted receipt did: the peer, and the conversation's watermarks before
    and after the batch (None: no conversation yet, nothing to move)."""

    peer: PeerRow
    moved: store.Moved | None

    def upto(self, kind: ReceiptKind) -> int:
        if self.moved is None:
            return 0
        return self.moved.read if kind == "read" else self.moved.delivered

    def advanced(self, kind: ReceiptKind) -> bool:
        m = self.moved
        if m is None:
            return False
        return m.read > m.read_before if kind == "read" else m.delivered > m.delivered_before


@dataclass(eq=False)
class _Send:
    """A message to check and store. Its checks that need the database run inside the
    batch (one query each, no hop of their own); every accepted message of a batch goes in
    with one INSERT."""

    principal: Principal
    to: str  # as asked: stripped, lower-cased (usernames are canonical lower case)
    parts: EnvelopeParts | None
    shape_error: InvalidInput | None
    envelope: str  # the JSON text stored
    created_at: datetime
    received: dict[str, Any] | None  # the envelope as received (a JSON object), if it was one
    future: asyncio.Future[Sent] = field(default_factory=lambda: _loop().create_future())
    new: NewMessage | None = None  # once accepted
    recipient: str = ""

    @property
    def key(self) -> tuple[int, str]:
        assert self.new is not None
        return self.new.sender_id, self.new.client_id

    @property
    def pair(self) -> tuple[int, int]:
        assert self.new is not None
        a, b = self.new.sender_id, self.new.recipient_id
        return (a, b) if a < b else (b, a)

    @property
    def device(self) -> str | None:
        return self.parts.sender_device if self.parts else None

    def accept(self, found: PeerRow | None, muted_until: datetime | None) -> NewMessage:
        """The checks of docs/protocol.md in their order (the rate limit came first);
        raises the first that fails."""
        _not_muted(muted_until, self.created_at)
        peer = _reachable(self.principal, found, self.to)
        if self.parts is None:
            assert self.shape_error is not None
            raise self.shape_error
        conv = dm_conv(self.principal.username, peer.username)
        _check_envelope(self.principal, peer, self.parts, conv)
        self.recipient = peer.username
        return NewMessage(
            conv=conv,
            sender_id=self.principal.user_id,
            recipient_id=peer.id,
            sender_device=self.parts.sender_device,
            client_id=self.parts.client_id,
            envelope=self.envelope,
            created_at=self.created_at,
        )


_Item = _Send | _Ack


class _Writer:
    """Runs queued writes a batch per transaction. The task lives only while there is work,
    so there is nothing to start or stop with the app. A batch costs a handful of
    statements whatever its size: one INSERT for all its messages, one for new
    conversations, one SELECT for retried client ids, and two for all its receipts."""

    def __init__(self) -> None:
        self.queue: list[_Item] = []
        self.task: asyncio.Task[None] | None = None
        self.known_pairs: set[tuple[int, int]] = set()  # conversations whose rows exist

    async def submit(self, ctx: Context, item: _Item) -> Any:
        self.queue.append(item)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run(ctx), name="dm-writer")
        return await item.future

    async def _run(self, ctx: Context) -> None:
        batch: list[_Item] = []
        while self.queue:
            try:
                async with dm_batch.writer_session(ctx.db) as session:
                    while self.queue and session.usable:
                        batch = self.queue[:MAX_BATCH]
                        del self.queue[:MAX_BATCH]
                        await self._batch(ctx, session, batch)
                        batch = []
            except Exception as exc:  # e.g. the database is unreachable: all waiting fail
                log.warning("DM writer: %s", exc)
                down = Unavailable("the database is unavailable; try again", code="unavailable")
                down.__cause__ = exc
                fail_all([*batch, *self.queue], down)
                self.queue.clear()
                batch = []
            except BaseException:
                fail_all([*batch, *self.queue], server_stopping())
                self.queue.clear()
                raise

    async def _batch(
        self, ctx: Context, session: dm_batch.WriterSession, batch: list[_Item]
    ) -> None:
        names = {n for i in batch if isinstance(i, _Send) for n in (i.principal.username, i.to)}
        async with session.locked(names):
            done = await commit_each(partial(self._commit, session), batch)
            for item, result in done:
                if isinstance(result, DomainError):
                    fail(item.future, result)
                elif isinstance(item, _Ack):
                    resolve(item.future, result.upto(item.kind))
                else:
                    resolve(item.future, result)
            await asyncio.sleep(0)  # the senders' `ok` replies go out before the events
            events: list[tuple[list[int], BaseModel | bytes]] = []
            receipts: set[tuple[int, int, str]] = set()  # one dm.receipt per kind and pair
            lowest: dict[int, int] = {}  # per user, the lowest new message id
            for item, result in done:
                if isinstance(result, DomainError):
                    continue
                if isinstance(item, _Send):
                    if not result.duplicate and item.new is not None:
                        users = [item.new.sender_id, item.new.recipient_id]
                        events.append((users, result.frame))
                        for user_id in users:
                            lowest[user_id] = min(
                                lowest.get(user_id, result.message.id), result.message.id
                            )
                    continue
                reader, peer = item.principal, result.peer
                once = (reader.user_id, peer.id, item.kind)
                if once in receipts or not result.advanced(item.kind):
                    continue
                receipts.add(once)
                data = DmReceiptData.model_construct(
                    conv=dm_conv(reader.username, peer.username),
                    reader=reader.username,
                    peer=peer.username,
                    kind=item.kind,
                    upto=result.upto(item.kind),
                )
                events.append(([reader.user_id, peer.id], _receipt_frame(data)))
            try:
                await notify.to_users_in_order(ctx, events)
            except Exception:
                log.exception("could not publish after a commit; the users are told to resync")
                for user_id in {user_id for users, _ in events for user_id in users}:
                    first = lowest.get(user_id)
                    ctx.lost.note(
                        ctx.bus,
                        notify.user_channel(user_id),
                        cursor=None if first is None else first - 1,
                    )

    async def _commit(
        self, session: dm_batch.WriterSession, batch: list[_Item]
    ) -> list[tuple[_Item, Any]]:
        """One transaction for the batch; per item its result or its refusal (a
        :class:`DomainError`, which leaves the others alone)."""
        sends = [item for item in batch if isinstance(item, _Send)]
        acks = [item for item in batch if isinstance(item, _Ack)]
        known = self.known_pairs

        def plan() -> dm_batch.Plan[tuple[list[tuple[_Item, Any]], set[tuple[int, int]]]]:
            out: list[tuple[_Item, Any]] = []
            accepted: list[_Send] = []
            asks = [(i.principal.user_id, i.to, i.device) for i in sends]
            asks += [(i.principal.user_id, i.to, None) for i in acks]
            checks: store.Checks = yield dm_batch.checks(
                asks, {i.principal.username for i in sends}
            )
            peers, muted = checks.peers, checks.muted_until
            for item, found in zip(sends, peers, strict=False):
                try:
                    item.new = item.accept(found, muted.get(item.principal.username))
                    accepted.append(item)
                except DomainError as exc:
                    out.append((item, exc))
            new_pairs = {s.pair: s for s in accepted if s.pair not in known}
            if new_pairs:
                yield dm_batch.ensure_pairs(
                    [(a, b, s.new.conv) for (a, b), s in new_pairs.items() if s.new]
                )
            inserted: dict[tuple[int, str], int] = {}
            if accepted:
                inserted = yield dm_batch.insert_many([s.new for s in accepted if s.new])
            claimed: set[tuple[int, str]] = set()
            retried: list[_Send] = []
            for item in accepted:
                if item.key in inserted and item.key not in claimed:
                    claimed.add(item.key)
                    out.append((item, inserted[item.key]))
                else:
                    retried.append(item)
            if retried:
                originals = yield dm_batch.by_client_ids([s.key for s in retried])
                out += [(item, originals[item.key]) for item in retried]
            # receipts, after this batch's messages: per conversation the highest of each kind
            wanted: dict[tuple[int, int], tuple[int, int]] = {}
            readers: list[tuple[_Ack, PeerRow]] = []
            for ack, found in zip(acks, peers[len(sends) :], strict=True):
                try:
                    peer = _reachable(ack.principal, found, ack.to)
                except DomainError as exc:
                    out.append((ack, exc))
                    continue
                key = (ack.principal.user_id, peer.id)
                delivered, read = wanted.get(key, (0, 0))
                if ack.kind == "read":
                    read = max(read, ack.upto)
                wanted[key] = (max(delivered, ack.upto), read)
                readers.append((ack, peer))
            moved: dict[tuple[int, int], store.Moved] = {}
            if wanted:
                moved = yield dm_batch.advance_many(wanted)
            for ack, peer in readers:
                out.append((ack, _Receipt(peer, moved.get((ack.principal.user_id, peer.id)))))
            return out, set(new_pairs)

        raw, new_pairs = await session.write(plan())
        self.known_pairs.update(new_pairs)
        results: list[tuple[_Item, Any]] = []
        for item, value in raw:
            if isinstance(item, _Send) and not isinstance(value, DomainError):
                if isinstance(value, int):
                    message, frame = _fresh(item, value)
                    value = Sent(message, duplicate=False, frame=frame)
                else:
                    value = Sent(public(value), duplicate=True)
            results.append((item, value))

        # events in commit order: the messages by id, then the receipts as queued
        def order(entry: tuple[_Item, Any]) -> tuple[int, int]:
            value = entry[1]
            return (0, value.message.id) if isinstance(value, Sent) else (1, 0)

        results.sort(key=order)
        return results


def _fresh(item: _Send, message_id: int) -> tuple[DmMessage, bytes]:
    """The Message of a message just stored, and its ``dm.message`` event frame, built
    without a round of validation or a re-parse of the envelope (the hot path: the values
    were checked before they were stored; the frame embeds the stored envelope text)."""
    new = item.new
    assert new is not None
    fields: dict[str, Any] = {
        "id": message_id,
        "conv": new.conv,
        "sender": item.principal.username,
        "recipient": item.recipient,
        "sender_device": new.sender_device,
        "client_id": new.client_id,
        "created_at": _iso(new.created_at),
    }
    envelope = item.received if item.received is not None else orjson.loads(new.envelope)
    message = DmMessage.model_construct(**fields, envelope=envelope)
    data = {**fields, "envelope": orjson.Fragment(new.envelope)}
    return message, orjson.dumps({"op": "ev", "type": "dm.message", "data": data})


def _receipt_frame(data: DmReceiptData) -> bytes:
    """A ``dm.receipt`` event frame (as :func:`notify.event_frame` would make it)."""
    return orjson.dumps({"op": "ev", "type": "dm.receipt", "data": data.__dict__})


_writers: weakref.WeakKeyDictionary[Database, _Writer] = weakref.WeakKeyDictionary()


async def stop_writer(db: Database) -> None:
    """Stop ``db``'s writer before the database closes (the app's shutdown): what is still
    queued is refused with ``unavailable``, and on PostgreSQL its connection (and locks) go
    before the pool is disposed."""
    writer = _writers.get(db)
    task = writer.task if writer else None
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _writer(db: Database) -> _Writer:
    writer = _writers.get(db)
    if writer is None:
        writer = _writers[db] = _Writer()
    return writer


# --- sending ---------------------------------------------------------------------------------


def _check_envelope(principal: Principal, peer: PeerRow, parts: EnvelopeParts, conv: str) -> None:
    if parts.conv != conv:
        raise InvalidInput(
            f"the envelope is for {parts.conv}, not {conv}",
            code="wrong_conversation",
            details={"field": "conv"},
        )
    if parts.sender != principal.username:
        raise InvalidInput(
            "the envelope's sender must be you", code="wrong_sender", details={"field": "sender"}
        )
    if not peer.device_known:
        raise InvalidInput(
            "the sending device is not one of your published devices",
            code="unknown_sender_device",
            details={"field": "sender_device"},
        )
    members = {principal.username, peer.username}
    for user, _, _ in parts.keys:
        if user not in members:
            raise InvalidInput(
                f"a wrap is for {user}, who is not in this conversation",
                code="bad_recipient",
                details={"field": "keys"},
            )


def _username(asked: str) -> str:
    """The canonical form of a username asked for; 404 at once for one that no account can
    have (no database work, and nothing odd, such as a NUL, reaches a batch's statement)."""
    name = asked.strip().lower()
    if not USERNAME_RE.fullmatch(name):
        raise NotFound(f"no user named {name!r}", code="user_not_found")
    return name


async def send(ctx: Context, principal: Principal, to: str, envelope: object) -> Sent:
    """Store a DM and tell both users; a retry of (sender, client_id) returns the original.

    Checks, in the order of docs/protocol.md: the rate limit, the recipient (404 / 403 /
    self), the envelope's shape, conversation, sender, sending device, recipients. Those
    that need the database run inside the group commit (:meth:`_Send.accept`)."""
    await limit(ctx, ctx.settings.rate_limit_dm_account, "dm", str(principal.user_id))
    parts: EnvelopeParts | None = None
    shape_error: InvalidInput | None = None
    try:
        parts = parse_envelope(envelope)
    except InvalidInput as exc:
        shape_error = exc
    item = _Send(
        principal=principal,
        to=_username(to),
        parts=parts,
        shape_error=shape_error,
        envelope=orjson.dumps(envelope).decode() if parts else "",
        created_at=ctx.clock(),
        received=envelope if type(envelope) is dict else None,
    )
    sent: Sent = await _writer(ctx.db).submit(ctx, item)
    return sent


# --- reading ---------------------------------------------------------------------------------


async def history(
    ctx: Context,
    principal: Principal,
    username: str,
    *,
    before: int | None = None,
    after: int | None = None,
    limit: int = HISTORY_LIMIT,
) -> History:
    """A page of the conversation with ``username`` (only its two members may read it)."""
    peer = await _peer(ctx, principal, username)
    limit = max(1, min(limit, HISTORY_MAX))
    conv = dm_conv(principal.username, peer.username)
    async with ctx.db.read() as conn:
        rows, has_more = await store.history(conn, conv, before=before, after=after, limit=limit)

    def marks(conn: store.Conn) -> tuple[tuple[int, int], tuple[int, int]]:
        return (
            store.watermarks(conn, peer.id, principal.user_id),
            store.watermarks(conn, principal.user_id, peer.id),
        )

    (peer_delivered, peer_read), (_, my_read) = await store.run_read(ctx.db, marks)
    return History(
        messages=[public(r) for r in rows],
        has_more=has_more,
        peer_delivered_upto=peer_delivered,
        peer_read_upto=peer_read,
        my_read_upto=my_read,
    )


def _conversation(row: ConversationRow) -> Conversation:
    return Conversation(
        username=row.username,
        display_name=row.display_name,
        conv=row.conv,
        last_message_id=row.last_id,
        last_message_at=_iso(row.last_at),
        unread=row.unread,
        offline=row.offline,
        my_delivered_upto=row.delivered_upto,
        my_read_upto=row.read_upto,
        peer_delivered_upto=row.peer_delivered_upto,
        peer_read_upto=row.peer_read_upto,
    )


async def conversations(ctx: Context, principal: Principal) -> list[Conversation]:
    """The user's conversations, newest activity first, with unread and offline counts."""
    async with ctx.db.read() as conn:
        rows = await store.conversations(conn, principal.user_id)
    return [_conversation(r) for r in rows]


async def offline_summary(ctx: Context, principal: Principal) -> OfflineSummaryEvent:
    """Per sender, the DMs no device of the user has acknowledged yet."""
    async with ctx.db.read() as conn:
        counts = await store.offline_counts(conn, principal.user_id)
    senders = [OfflineSender(username=u, display_name=d, count=n) for u, d, n in counts]
    return OfflineSummaryEvent(
        data=OfflineSummaryData(senders=senders, total=sum(s.count for s in senders))
    )


@dataclass(frozen=True)
class Replay:
    messages: list[DmMessage]
    cursor: int
    more: bool


async def replay(ctx: Context, principal: Principal, cursor: int | None, page: int) -> Replay:
    """What a reconnecting client missed: the user's messages after ``cursor``, one page.
    Without a cursor nothing is replayed and the cursor is the user's newest message id."""
    async with ctx.db.read() as conn:
        if cursor is None:
            return Replay([], await store.newest_id(conn, principal.user_id), False)
        rows = await store.replay(conn, principal.user_id, cursor, page + 1)
    more = len(rows) > page
    rows = rows[:page]
    return Replay([public(r) for r in rows], rows[-1].id if rows else cursor, more)


# --- receipts --------------------------------------------------------------------------------


async def acknowledge(
    ctx: Context, principal: Principal, username: str, kind: ReceiptKind, upto: int
) -> int:
    """Move the user's ``kind`` watermark for ``username``'s messages forward to ``upto``
    (clamped to the peer's newest message; ``read`` implies ``delivered``). Both users'
    sockets get ``dm.receipt`` when it moved (one per kind and conversation, however many
    acks a group commit held). The watermark after the call."""
    ack = _Ack(principal=principal, to=_username(username), kind=kind, upto=upto)
    result: int = await _writer(ctx.db).submit(ctx, ack)
    return result


# --- moderation ----------------------------------------------------------------------------


async def delete_for_report(ctx: Context, message_id: int) -> None:
    """Remove one DM's stored envelope (a moderator acting on a report; the caller audits
    it); 404 ``message_not_found`` if there is none. Clients that already hold it keep
    their copy; history and replays no longer have it."""
    async with ctx.db.transaction() as conn:
        existed = await store.delete_message_txn(conn, message_id)
    if not existed:
        raise NotFound("no such message", code="message_not_found")


# --- BUZZ! -----------------------------------------------------------------------------------


async def buzz(ctx: Context, principal: Principal, username: str) -> None:
    """Shake ``username``'s windows. Not stored; refused while the sender is muted;
    rate-limited per (sender, recipient)."""
    me = principal.username
    checks = await store.run_read(
        ctx.db, lambda conn: store.checks_for(conn, [(principal.user_id, username, None)], [me])
    )
    _not_muted(checks.muted_until.get(me), ctx.clock())
    peer = _reachable(principal, checks.peers[0], username)
    await limit(ctx, ctx.settings.rate_limit_buzz, "buzz", f"{principal.user_id}:{peer.id}")
    await notify.to_user(ctx, peer.id, BuzzEvent(data=BuzzData(username=principal.username)))


# --- retention -------------------------------------------------------------------------------


async def purge_expired(ctx: Context, now: datetime | None = None) -> int:
    """Delete DMs older than ``message_retention_days`` (0: keep forever); how many."""
    days = ctx.settings.message_retention_days
    if days <= 0:
        return 0
    cutoff = (now or ctx.clock()) - timedelta(days=days)
    total = 0
    while True:
        async with ctx.db.transaction() as conn:
            deleted = await store.purge_before_txn(conn, cutoff, PURGE_BATCH)
        total += deleted
        if deleted < PURGE_BATCH:
            break
        await asyncio.sleep(0)  # let sends in between batches
    if total:
        log.info("retention: deleted %d direct messages older than %d days", total, days)
    return total


async def retention_loop(ctx: Context, interval: float = 3600.0) -> None:
    """Purge hourly (first run at start) while the app runs."""
    while True:
        try:
            await purge_expired(ctx)
        except asyncio.CancelledError:
            raise
        except DomainError as exc:
            log.warning("retention purge skipped: %s", exc.message)
        except Exception:
            log.exception("retention purge failed; retrying in an hour")
        await asyncio.sleep(interval)
