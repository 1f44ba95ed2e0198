"""``store.messages.insert_many_txn`` on SQLite runs its INSERT as driver SQL (not through
SQLAlchemy's per-row parameter processing): rows must come out exactly as SQLAlchemy
would have stored them (the timestamp's text included, which retention compares), with
the ids in list order and (sender, client id) duplicates skipped.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, select, text

from echochat.store import messages as store
from echochat.store.tables import messages, users
from tests.wsutil import MakeSettings, Server, serve


@pytest.fixture
async def server(make_settings: MakeSettings) -> AsyncIterator[Server]:
    async with serve(make_settings) as started:
        yield started


def new(sender: int, recipient: int, client_id: str, at: datetime) -> store.NewMessage:
    return store.NewMessage(
        conv="dm:a:b",
        sender_id=sender,
        recipient_id=recipient,
        sender_device="dev-00000001",
        client_id=client_id,
        envelope='{"v":1}',
        created_at=at,
    )


async def test_sqlite_insert_stores_what_sqlalchemy_would(server: Server) -> None:
    db = server.ctx.db
    async with db.transaction() as conn:
        ids = []
        for name in ("ann", "ben"):
            row = await conn.execute(
                insert(users)
                .values(username=name, display_name=name, password_hash="x")
                .returning(users.c.id)
            )
            ids.append(int(row.scalar_one()))
    a, b = ids
    whole = datetime(2026, 12, 2, 7, 1, 2, tzinfo=UTC)  # no microseconds: still 6 digits
    fine = datetime(2026, 12, 2, 7, 1, 2, 5, tzinfo=UTC)
    batch = [new(a, b, "c1", whole), new(b, a, "c1", fine), new(a, b, "c1", fine)]
    got = await store.run_write(db, lambda conn: store.insert_many_txn(conn, batch))
    assert list(got) == [(a, "c1"), (b, "c1")]  # the second (a, c1) was skipped
    assert got[(a, "c1")] < got[(b, "c1")]
    again = await store.run_write(db, lambda conn: store.insert_many_txn(conn, batch[:1]))
    assert again == {}

    # the reference: the same row written through SQLAlchemy
    async with db.transaction() as conn:
        await conn.execute(
            insert(messages).values(
                conv="dm:a:b",
                sender_id=a,
                recipient_id=b,
                sender_device="dev-00000001",
                client_id="ref",
                envelope='{"v":1}',
                created_at=whole,
            )
        )
    async with db.read() as conn:
        found = await conn.execute(text("SELECT client_id || sender_id, created_at FROM messages"))
        raw = {str(key): str(at) for key, at in found}
        parsed = (
            await conn.execute(select(messages.c.created_at).order_by(messages.c.id))
        ).scalars()
        assert list(parsed) == [whole, fine, whole]
    assert raw[f"c1{a}"] == raw[f"ref{a}"] == "2026-12-02 07:01:02.000000"
    assert re.fullmatch(r"2026-12-02 07:01:02\.000005", raw[f"c1{b}"])
