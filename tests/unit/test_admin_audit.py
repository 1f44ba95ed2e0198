"""The audit log in the admin API (issue 8): filters and paging, the CSV export (quoting and
the formula-injection guard), and the dashboard's numbers."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select, update

from echochat.services import admin
from echochat.services.accounts import authenticate
from echochat.store import audit
from echochat.store.tables import messages, room_messages, rooms, users
from tests.adminutil import ADMIN, AdminSite, MakeSettings, open_admin_site
from tests.wsutil import User

IP = "203.0.113.99"


@pytest.fixture
async def site(make_settings: MakeSettings) -> AsyncIterator[AdminSite]:
    async with open_admin_site(make_settings, ip=IP) as started:
        yield started


@pytest.fixture
async def alice(site: AdminSite) -> User:
    return await site.user("alice", "admin")


async def add_rows(site: AdminSite, count: int, **fields: str) -> None:
    async with site.ctx.db.transaction() as conn:
        for i in range(count):
            await audit.append_txn(
                conn,
                actor=fields.get("actor", "robot"),
                action=fields.get("action", "test.thing"),
                target_type="user",
                target=fields.get("target", f"t{i}"),
                ip=fields.get("ip", "10.0.0.1"),
                details={"i": i},
            )


async def test_filters_and_paging(site: AdminSite, alice: User) -> None:
    await add_rows(site, 7, action="test.thing")
    await add_rows(site, 2, action="user.ban", actor="Alice", target="bob")
    await add_rows(site, 1, action="user.banish", target="bob")  # not a user.ban prefix match

    async def page(query: str) -> dict[str, object]:
        response = await site.call("GET", f"{ADMIN}/audit?{query}", alice)
        assert response.status_code == 200, response.text
        body: dict[str, object] = response.json()
        return body

    first = await page("action=test&limit=3")
    entries = first["entries"]
    assert isinstance(entries, list)
    assert [e["details"]["i"] for e in entries] == [6, 5, 4]  # newest first
    assert first["next_before"] == entries[-1]["id"]
    seen = [e["id"] for e in entries]
    cursor = first["next_before"]
    while cursor is not None:
        more = await page(f"action=test&limit=3&before={cursor}")
        assert isinstance(more["entries"], list)
        seen += [e["id"] for e in more["entries"]]
        cursor = more["next_before"]
    assert len(seen) == 7 and seen == sorted(seen, reverse=True)

    exact = await page("action=user.ban")
    assert [e["action"] for e in exact["entries"]] == ["user.ban", "user.ban"]  # type: ignore[union-attr]
    prefix = await page("action=user")
    assert {e["action"] for e in prefix["entries"]} == {"user.ban", "user.banish"}  # type: ignore[union-attr]
    by_actor = await page("actor=alice")  # any case
    assert {e["actor"] for e in by_actor["entries"]} == {"Alice"}  # type: ignore[union-attr]
    by_target = await page("target=BOB&action=user.ban")
    assert len(by_target["entries"]) == 2  # type: ignore[arg-type]
    entry = by_target["entries"][0]  # type: ignore[index]
    assert set(entry) == {"id", "at", "actor", "action", "target_type", "target", "ip", "details"}
    assert datetime.fromisoformat(entry["at"]).tzinfo is not None
    for bad in ("limit=0", "limit=501", "before=0", "before=x"):
        response = await site.call("GET", f"{ADMIN}/audit?{bad}", alice)
        assert response.status_code == 422, bad


async def test_csv_export_quotes_and_defuses_formulas(site: AdminSite, alice: User) -> None:
    nasty = [
        '=HYPERLINK("http://evil.example","click")',
        "+1+1",
        "-2+3",
        "@SUM(A1)",
        "\tTAB",
        'comma, "quote"\nnewline',
        "plain",
    ]
    async with site.ctx.db.transaction() as conn:
        for text in nasty:
            await audit.append_txn(
                conn, actor=text, action="test.csv", target=text, ip="-1", details={"t": text}
            )
    response = await site.call("GET", f"{ADMIN}/audit.csv?action=test.csv", alice)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith("attachment; filename=")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == list(admin.AUDIT_COLUMNS)
    body = rows[1:]
    assert len(body) == len(nasty)
    by_target = {row[5]: row for row in body}
    for text in nasty:
        shown = "'" + text if text[0] in "=+-@\t" else text
        row = by_target[shown]
        assert row[2] == shown  # actor column too
        assert row[6] == "'-1"  # ip
        assert row[3] == "test.csv"
        assert json.loads(row[7]) == {"t": text}  # JSON starts with "{": never defused
    for row in body:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t")), row

    # the export is itself audited, and filters apply to it
    exports = await site.audit("audit.export")
    assert [(r.actor, r.ip) for r in exports] == [("alice", IP)]
    only_export = await site.call("GET", f"{ADMIN}/audit.csv?action=audit.export", alice)
    assert len(list(csv.reader(io.StringIO(only_export.text)))) == 1 + 2


async def test_csv_export_streams_every_row_in_batches(site: AdminSite, alice: User) -> None:
    await add_rows(site, 23, action="bulk.row")
    principal = await authenticate(site.ctx, alice.token)
    lines = await admin.audit_csv(site.ctx, principal, action="bulk", batch=5)
    chunks = [line async for line in lines]
    assert len(chunks) == 1 + 23  # one line per chunk: streamed, not built whole
    ids = [int(next(csv.reader([c]))[0]) for c in chunks[1:]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 23


def test_csv_cell() -> None:
    assert admin.csv_cell("=1+2") == "'=1+2"
    assert admin.csv_cell("-") == "'-"
    assert admin.csv_cell("\rx") == "'\rx"
    assert admin.csv_cell("a=b") == "a=b"
    assert admin.csv_cell(None) == ""
    assert admin.csv_cell(42) == "42"


async def test_stats(site: AdminSite, alice: User) -> None:
    bob = await site.user("bob")
    now = datetime.now(UTC)
    async with site.ctx.db.transaction() as conn:
        # bob "signed up" 3 days ago; one DM today, two 3 days ago, one 40 days ago (outside)
        await conn.execute(
            update(users).where(users.c.id == bob.id).values(created_at=now - timedelta(days=3))
        )
        for i, age in enumerate((0, 3, 3, 40)):
            await conn.execute(
                insert(messages).values(
                    conv="dm:alice:bob",
                    sender_id=alice.id,
                    recipient_id=bob.id,
                    sender_device="d",
                    client_id=f"c{i}",
                    envelope="{}",
                    created_at=now - timedelta(days=age),
                )
            )
        room_id = (await conn.execute(select(rooms.c.id).limit(1))).scalar_one()
        await conn.execute(
            insert(room_messages).values(
                room_id=room_id,
                sender_id=bob.id,
                client_id="r1",
                kind="text",
                body="hi",
                created_at=now - timedelta(days=1),
            )
        )
    response = await site.call("GET", f"{ADMIN}/stats", alice)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["users_total"] == 2
    assert body["online_users"] == 0
    days = {d["day"]: d for d in body["days"]}
    assert len(body["days"]) == 30
    today = now.date()
    assert body["days"][-1]["day"] == today.isoformat()
    assert days[today.isoformat()]["dms"] == 1
    assert days[today.isoformat()]["signups"] == 1  # alice
    three = (today - timedelta(days=3)).isoformat()
    assert (days[three]["dms"], days[three]["signups"]) == (2, 1)
    assert days[(today - timedelta(days=1)).isoformat()]["room_messages"] == 1
    assert sum(d["dms"] for d in body["days"]) == 3
