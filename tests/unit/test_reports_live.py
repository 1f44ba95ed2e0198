"""The reviewers' live queue (docs/security.md, "Reports"): after a report is filed, every
socket of every holder of ``reports:review`` gets ``report.new`` ``{id, kind, open}``, and
after one is resolved ``report.resolved`` ``{id, open}``; nobody else does, the events never
say who reported what, and a failed publish never fails the committed report. Real sockets
on a uvicorn server of this process (tests/wsutil.py)."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest

from echochat.services import notify, roles
from echochat.store import users as user_store
from tests.adminutil import ADMIN, MakeSettings
from tests.wsutil import API, Server, Socket, User, login, register, serve

MARKER = {"op": "ev", "type": "test.marker", "data": {}}


async def report(server: Server, who: User, **body: Any) -> dict[str, Any]:
    body.setdefault("reason", "spam and insults")
    response = await server.http.post(f"{API}/reports", json=body, headers=who.headers)
    assert response.status_code == 201, response.text
    filed: dict[str, Any] = response.json()
    return filed


async def nothing_about_reports(server: Server, user: User, sock: Socket) -> None:
    """Everything published to ``user`` so far reaches ``sock`` before a marker sent now
    (one channel keeps its order): no report.new / report.resolved came before it."""
    await server.ctx.bus.publish(notify.user_channel(user.id), b"E" + orjson.dumps(MARKER))
    frame = await sock.event("test.marker")
    assert frame == MARKER
    seen = [f.get("type") for f in sock.pending]
    assert "report.new" not in seen and "report.resolved" not in seen, (user.username, seen)


async def test_reviewers_hear_of_new_and_resolved_reports_and_nobody_else(
    make_settings: MakeSettings,
) -> None:
    async with serve(make_settings) as server:
        root = await register(server.http, "root")
        assert await roles.grant_role(server.ctx.db, "root", "admin", actor="tests")
        mod = await register(server.http, "mod")
        assert await roles.grant_role(server.ctx.db, "mod", "moderator", actor="tests")
        bob = await register(server.http, "bob")
        carol = await register(server.http, "carol")
        await register(server.http, "dave")
        root_laptop = await server.connect(root)
        root_phone = await server.connect(await login(server.http, "root"))
        mod_sock = await server.connect(mod)
        bob_sock = await server.connect(bob)
        carol_sock = await server.connect(carol)
        reviewers = (root_laptop, root_phone, mod_sock)

        first = await report(server, bob, kind="user", username="dave", excerpt="you are a pest")
        for sock in reviewers:
            frame = await sock.event("report.new")
            assert frame["data"] == {"id": first["id"], "kind": "user", "open": 1}
            text = orjson.dumps(frame).decode()
            for secret in ("bob", "dave", "spam", "pest"):
                assert secret not in text, secret
        second = await report(server, carol, kind="user", username="dave")
        for sock in reviewers:
            assert (await sock.event("report.new"))["data"]["open"] == 2
        await nothing_about_reports(server, bob, bob_sock)
        await nothing_about_reports(server, carol, carol_sock)

        # a reviewer who reports is told like the others
        third = await report(server, mod, kind="user", username="carol")
        for sock in reviewers:
            frame = await sock.event("report.new")
            assert frame["data"] == {"id": third["id"], "kind": "user", "open": 3}

        resolved = await server.http.post(
            f"{ADMIN}/reports/{first['id']}/resolve",
            json={"action": "dismiss", "resolution": "nothing there"},
            headers=root.headers,
        )
        assert resolved.status_code == 200, resolved.text
        for sock in reviewers:
            frame = await sock.event("report.resolved")
            assert frame["data"] == {"id": first["id"], "open": 2}
            assert "nothing there" not in orjson.dumps(frame).decode()
        await bob_sock.event("report.update", id=first["id"])  # the reporter's own event
        await nothing_about_reports(server, bob, bob_sock)
        await nothing_about_reports(server, carol, carol_sock)
        assert second["id"] != third["id"]

        # a banned moderator is no longer among those told
        banned = await server.http.patch(
            f"{ADMIN}/users/mod", json={"banned": True}, headers=root.headers
        )
        assert banned.status_code == 200, banned.text
        async with server.ctx.db.read() as conn:
            assert await user_store.holders_of(conn, "reports:review") == [root.id]
            assert await user_store.holders_of(conn, "audit:read") == [root.id]
        for sock in (bob_sock, carol_sock, root_laptop, root_phone, mod_sock):
            await sock.close()


async def test_a_failed_publish_does_not_fail_the_report(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with serve(make_settings) as server:
        root = await register(server.http, "root")
        assert await roles.grant_role(server.ctx.db, "root", "admin", actor="tests")
        bob = await register(server.http, "bob")
        await register(server.http, "dave")

        async def broken(*_: Any, **__: Any) -> None:
            raise ConnectionError("the bus is down")

        monkeypatch.setattr(server.ctx.bus, "publish_many", broken)
        monkeypatch.setattr(server.ctx.bus, "publish", broken)
        with caplog.at_level(logging.ERROR, logger="echochat.reports"):
            filed = await report(server, bob, kind="user", username="dave")
            resolved = await server.http.post(
                f"{ADMIN}/reports/{filed['id']}/resolve",
                json={"action": "dismiss"},
                headers=root.headers,
            )
        assert resolved.status_code == 200, resolved.text
        assert resolved.json()["status"] == "dismissed"
        logged = [r.getMessage() for r in caplog.records if r.name == "echochat.reports"]
        assert sum("report queue event not published" in m for m in logged) == 2, logged
        monkeypatch.undo()
        queue = await server.http.get(
            f"{ADMIN}/reports", params={"status": "dismissed"}, headers=root.headers
        )
        assert [r["id"] for r in queue.json()["reports"]] == [filed["id"]]
