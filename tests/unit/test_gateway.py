"""The ``/ws`` gateway against a real uvicorn server in this process (ARCHITECTURE section 5,
docs/protocol.md): refusals on the upgrade, bad frames, rate limits, kicks, presence and
typing between buddies, backpressure and heartbeats.

Every wait is bounded (``asyncio.timeout``); "nothing arrived" is checked by a ``ping``
whose ``ok`` reply must come first (replies and events on one socket are ordered).
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import websockets
from sqlalchemy import select, update
from websockets.exceptions import InvalidStatus

from echochat.api.cookies import access_cookie_name
from echochat.domain.events import BuzzData, BuzzEvent
from echochat.realtime import gateway
from echochat.realtime.frames import PingIn
from echochat.realtime.hub import CLOSE_KICKED, CLOSE_SLOW, Connection, Hub
from echochat.services import notify, roomcast
from echochat.services.accounts import Principal
from echochat.store import outbox
from echochat.store.tables import users
from tests.wsutil import (
    API,
    Frame,
    MakeSettings,
    Server,
    Socket,
    User,
    bearer,
    befriend,
    login,
    register,
    serve,
)

NEW_PASSWORD = "amber-lantern-orchard-77"
KICK_WITHIN = 1.0  # seconds: "kicked then close ... within a second" (issue 4)


@pytest.fixture
async def server(make_settings: MakeSettings) -> AsyncIterator[Server]:
    async with serve(make_settings, max_frame_bytes=2048) as started:
        yield started


async def refused(server: Server, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    """Try an upgrade that must be refused with an HTTP answer: (status, error object)."""
    try:
        ws = await websockets.connect(server.ws_url, proxy=None, open_timeout=5, **kwargs)
    except InvalidStatus as exc:
        response = exc.response
    else:
        await ws.close()
        raise AssertionError("the upgrade was accepted")
    body = orjson.loads(response.body or b"{}")
    assert set(body) == {"error"}, body
    assert response.headers["Content-Type"].startswith("application/json")
    return response.status_code, body["error"]


async def session_id(server: Server, user: User) -> str:
    response = await server.http.get(f"{API}/me", headers=user.headers)
    assert response.status_code == 200, response.text
    sid: str = response.json()["session_id"]
    return sid


def is_presence(username: str, *, state: str | None = None) -> Callable[[Frame], bool]:
    def match(frame: Frame) -> bool:
        return (
            frame.get("op") == "ev"
            and frame.get("type") == "presence"
            and frame["data"]["username"] == username
            and (state is None or frame["data"]["state"] == state)
        )

    return match


def shown_to_others(username: str) -> Callable[[Frame], bool]:
    """A presence frame about ``username`` that is anything but offline."""

    def match(frame: Frame) -> bool:
        return is_presence(username)(frame) and frame["data"]["state"] != "offline"

    return match


async def buddy_view(server: Server, viewer: User, username: str) -> dict[str, Any]:
    """What ``viewer``'s GET /buddies says about ``username``."""
    response = await server.http.get(f"{API}/buddies", headers=viewer.headers)
    assert response.status_code == 200, response.text
    (buddy,) = [b for b in response.json()["buddies"] if b["username"] == username]
    return {"state": buddy["state"], "status": buddy["status"]}


# --- refusals on the upgrade ------------------------------------------------------------------


async def test_upgrade_without_credentials_is_401(server: Server) -> None:
    status, error = await refused(server)
    assert (status, error["code"]) == (401, "not_authenticated")
    status, error = await refused(server, origin=server.url)  # a page of ours, signed out
    assert (status, error["code"]) == (401, "not_authenticated")
    status, error = await refused(server, additional_headers={"Authorization": "Bearer "})
    assert (status, error["code"]) == (401, "not_authenticated")


async def test_upgrade_with_a_bad_or_expired_token_is_401(server: Server) -> None:
    alice = await register(server.http, "alice")
    status, error = await refused(server, additional_headers=bearer("not-a-jwt"))
    assert (status, error["code"]) == (401, "token_invalid")
    tampered = alice.token[:-4] + ("AAAA" if not alice.token.endswith("AAAA") else "BBBB")
    status, error = await refused(server, additional_headers=bearer(tampered))
    assert (status, error["code"]) == (401, "token_invalid")
    # a token that was genuine an hour ago (access tokens live ~10 minutes)
    sid = await session_id(server, alice)
    old = server.ctx.keys.issue_access(alice.id, sid, now=time.time() - 3600)
    status, error = await refused(server, additional_headers=bearer(old))
    assert (status, error["code"]) == (401, "token_expired")


async def test_upgrade_of_a_signed_out_session_is_401(server: Server) -> None:
    alice = await register(server.http, "alice")
    out = await server.http.post(f"{API}/auth/logout", headers=alice.headers)
    assert out.status_code == 204, out.text
    status, error = await refused(server, additional_headers=alice.headers)
    assert (status, error["code"]) == (401, "session_revoked")


async def test_upgrade_of_a_banned_user_is_403(server: Server) -> None:
    alice = await register(server.http, "alice")
    async with server.ctx.db.transaction() as conn:
        await conn.execute(
            update(users).where(users.c.id == alice.id).values(banned_at=datetime.now(UTC))
        )
    status, error = await refused(server, additional_headers=alice.headers)
    assert (status, error["code"]) == (403, "banned")


async def test_upgrade_from_a_foreign_origin_is_403(server: Server) -> None:
    alice = await register(server.http, "alice")
    for origin in ("https://evil.example", server.url.replace("127.0.0.1", "localhost"), "null"):
        status, error = await refused(server, additional_headers=alice.headers, origin=origin)
        assert (status, error["code"]) == (403, "bad_origin"), origin
    cookie = {"Cookie": f"{access_cookie_name(server.settings)}={alice.token}"}
    status, error = await refused(server, additional_headers=cookie, origin="https://evil.example")
    assert (status, error["code"]) == (403, "bad_origin")


async def test_cookie_upgrade_without_origin_is_403(server: Server) -> None:
    """Cross-site WebSocket hijacking: only our own page (which sends Origin) may use the
    cookie."""
    alice = await register(server.http, "alice")
    cookie = {"Cookie": f"{access_cookie_name(server.settings)}={alice.token}"}
    status, error = await refused(server, additional_headers=cookie)
    assert (status, error["code"]) == (403, "bad_origin")


async def test_cookie_upgrade_from_our_page_and_bearer_upgrade_are_accepted(
    server: Server,
) -> None:
    alice = await register(server.http, "alice")
    cookie = {"Cookie": f"{access_cookie_name(server.settings)}={alice.token}"}
    browser = await server.connect(additional_headers=cookie, origin=server.url)
    sdk = await server.connect(alice)
    sdk_with_origin = await server.connect(alice, origin=server.url)
    for sock in (browser, sdk, sdk_with_origin):
        assert "time" in await sock.call("ping", {})
        await sock.close()


async def test_hello_event_and_op(server: Server) -> None:
    alice = await register(server.http, "alice")
    ws = await websockets.connect(
        server.ws_url, additional_headers=alice.headers, proxy=None, ping_interval=None
    )
    sock = Socket(ws)
    hello = await sock.recv()
    assert hello["op"] == "ev" and hello["type"] == "hello"
    assert hello["data"]["username"] == "alice"
    assert hello["data"]["session_id"] == await session_id(server, alice)
    assert hello["data"]["heartbeat"] == server.settings.ws_heartbeat
    assert abs(hello["data"]["server_time"] - time.time()) < 30
    assert await sock.call("hello", {"cursor": 5, "device_id": "laptop"}) == {
        "cursor": 5,
        "replayed": 0,
        "more": False,
    }
    assert await sock.call("hello") == {"cursor": 0, "replayed": 0, "more": False}
    reply = await sock.reply(await sock.send_op("ping", {}))
    assert set(reply) == {"op", "ref", "data"}
    await sock.close()


# --- bad frames: an err reply, and the socket stays open --------------------------------------


async def test_oversized_frames_get_frame_too_large(server: Server) -> None:
    alice = await register(server.http, "alice")
    sock = await server.connect(alice)
    await sock.ws.send("x" * 2049)
    assert await sock.recv() == {
        "op": "err",
        "ref": None,
        "error": {"code": "frame_too_large", "message": "frame larger than 2048 bytes"},
    }
    big = orjson.dumps({"op": "ping", "ref": "big", "data": {"pad": "x" * 4000}}).decode()
    await sock.ws.send(big)
    error = await sock.recv()
    assert error["op"] == "err" and error["error"]["code"] == "frame_too_large"
    # just under the limit is fine (and then judged on its content)
    fits = orjson.dumps({"op": "ping", "ref": "fits", "data": {}}).decode()
    await sock.ws.send(fits + " " * (2048 - len(fits)))
    assert (await sock.recv())["op"] == "ok"
    assert "time" in await sock.call("ping", {})
    await sock.close()


async def test_frame_limit_counts_bytes(server: Server) -> None:
    alice = await register(server.http, "alice")
    sock = await server.connect(alice)
    await sock.ws.send('"' + "é" * 1500 + '"')
    error = await sock.recv()
    assert error["error"]["code"] == "frame_too_large", error


async def test_frame_over_the_limit_is_closed_1009_as_echochat_serve_runs_uvicorn(
    make_settings: MakeSettings,
) -> None:
    """`echochat serve` gives uvicorn ws_max_size=max_frame_bytes: there the protocol layer
    closes with 1009 (docs/protocol.md, close codes) before the gateway sees the frame."""
    async with serve(
        make_settings, max_frame_bytes=2048, uvicorn_options={"ws_max_size": 2048}
    ) as strict:
        alice = await register(strict.http, "alice")
        sock = await strict.connect(alice)
        await sock.ws.send("x" * 3000)
        closed = await sock.closed()
        assert closed.rcvd is not None and closed.rcvd.code == 1009
        again = await strict.connect(alice)  # nothing else was harmed
        assert "time" in await again.call("ping", {})
        await again.close()


async def test_malformed_frames_get_err_replies(server: Server) -> None:
    alice = await register(server.http, "alice")
    sock = await server.connect(alice)

    async def answer(raw: str | bytes) -> Frame:
        await sock.ws.send(raw)
        frame = await sock.recv()
        assert frame["op"] == "err", frame
        assert set(frame) == {"op", "ref", "error"}
        assert set(frame["error"]) == {"code", "message"} and frame["error"]["message"]
        return frame

    assert (await answer('{"op": "ping",'))["error"]["code"] == "bad_json"
    assert (await answer("ping"))["error"]["code"] == "bad_json"
    assert (await answer(""))["error"]["code"] == "bad_json"
    for raw in ("[1, 2]", '"ping"', "null", "42"):
        frame = await answer(raw)
        assert frame["error"]["code"] == "invalid_input", raw
        assert frame["ref"] is None
    binary = await answer(b'{"op": "ping"}')
    assert binary["error"]["code"] == "bad_frame"
    assert "time" in await sock.call("ping", {})  # still open
    await sock.close()


async def test_bad_fields_get_invalid_input_with_the_ref(server: Server) -> None:
    alice = await register(server.http, "alice")
    sock = await server.connect(alice)
    cases: list[dict[str, Any]] = [
        {"ref": "no-op", "data": {}},
        {"op": 5, "ref": "int-op"},
        {"op": "", "ref": "empty-op"},
        {"op": "ping", "ref": "data-list", "data": []},
        {"op": "ping", "ref": "extra-key", "data": {}, "x": 1},
        {"op": "ping", "ref": "extra-field", "data": {"x": 1}},
        {"op": "presence.set", "ref": "bad-state", "data": {"state": "offline"}},
        {"op": "presence.set", "ref": "idle-type", "data": {"idle": "sometimes"}},
        {"op": "typing", "ref": "no-to", "data": {}},
        {"op": "hello", "ref": "neg-cursor", "data": {"cursor": -1}},
    ]
    for case in cases:
        await sock.send_json(case)
        reply = await sock.recv()
        assert reply["op"] == "err", (case, reply)
        assert reply["ref"] == case["ref"], (case, reply)
        assert reply["error"]["code"] == "invalid_input", (case, reply)
    # a ref that is not a string is not echoed; an over-long one is cut
    await sock.send_json({"op": "nope", "ref": 7})
    assert (await sock.recv())["ref"] is None
    await sock.send_json({"op": "ping", "ref": "r" * 100})
    reply = await sock.recv()
    assert reply["op"] == "err" and reply["ref"] == "r" * 64
    assert "time" in await sock.call("ping", {})
    await sock.close()


async def test_unknown_op_and_op_refusals(server: Server) -> None:
    alice = await register(server.http, "alice")
    sock = await server.connect(alice)
    for op in ("room.explode", "admin.nuke", "PING"):
        error = await sock.error(op, {})
        assert error["code"] == "unknown_op", op
    too_long = await sock.error("presence.set", {"status": "s" * 141})
    assert too_long["code"] == "status_too_long"
    fits = await sock.call("presence.set", {"status": "  " + "s" * 140 + "  "})
    assert fits == {"state": "online", "status": "s" * 140}
    assert "time" in await sock.call("ping", {})
    await sock.close()


async def test_an_op_that_fails_unexpectedly_answers_internal(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def boom(*_: Any) -> dict[str, Any]:
        raise RuntimeError("kaboom")

    alice = await register(server.http, "alice")
    sock = await server.connect(alice)
    monkeypatch.setitem(gateway.OPS, "ping", (PingIn, boom))
    error = await sock.error("ping", {})
    assert error == {"code": "internal", "message": "unexpected server error"}
    monkeypatch.undo()
    assert "time" in await sock.call("ping", {})
    await sock.close()


async def test_flood_is_rate_limited_then_closed_1008_and_others_carry_on(
    make_settings: MakeSettings,
) -> None:
    async with serve(
        make_settings, max_frame_bytes=2048, ws_frames_per_second=5, ws_burst=5
    ) as limited:
        alice = await register(limited.http, "alice")
        bob = await register(limited.http, "bob")
        await befriend(limited.http, alice, bob)
        flooder = await limited.connect(alice)
        bystander = await limited.connect(bob)
        for i in range(80):
            await flooder.ws.send(orjson.dumps({"op": "ping", "ref": f"f{i}"}).decode())
        closed = await flooder.closed()
        assert closed.rcvd is not None and closed.rcvd.code == 1008
        replies = [f for f in flooder.pending if f.get("op") in ("ok", "err")]
        oks = [f for f in replies if f["op"] == "ok"]
        limited_ = [f for f in replies if f["op"] == "err" and f["error"]["code"] == "rate_limited"]
        assert 5 <= len(oks) < 15, replies
        assert len(limited_) >= 20, replies
        assert replies[-1]["op"] == "err"
        assert replies[-1]["error"]["code"] == "too_many_errors"
        assert len(replies) < 80  # closed before reading everything
        # the others are served; bob saw alice go offline when her socket closed
        await bystander.event("presence", username="alice", state="offline")
        assert "time" in await bystander.call("ping", {})
        assert (await limited.http.get("/healthz")).status_code == 200
        # the abuser may come back (1008 is not a ban), at the normal pace
        back = await limited.connect(alice)
        assert "time" in await back.call("ping", {})
        await back.close()
        await bystander.close()


async def test_rate_limited_reply_names_the_refused_frame(make_settings: MakeSettings) -> None:
    async with serve(make_settings, ws_frames_per_second=5, ws_burst=5) as limited:
        alice = await register(limited.http, "alice")
        sock = await limited.connect(alice)
        for i in range(8):
            await sock.ws.send(orjson.dumps({"op": "ping", "ref": f"f{i}"}).decode())
        replies = [await sock.recv() for _ in range(8)]
        refused_ = [r for r in replies if r["op"] == "err"]
        assert refused_, replies
        assert all(r["error"]["code"] == "rate_limited" for r in refused_)
        assert all(r["ref"] is not None for r in refused_), refused_


async def test_steady_traffic_under_the_limit_is_never_refused(
    make_settings: MakeSettings,
) -> None:
    async with serve(make_settings, ws_frames_per_second=20, ws_burst=5) as limited:
        alice = await register(limited.http, "alice")
        sock = await limited.connect(alice)
        for _ in range(12):  # 12 frames at ~10 per second
            assert "time" in await sock.call("ping", {})
            await asyncio.sleep(0.1)  # pacing the client, not waiting for the server
        await sock.close()


async def test_garbage_beyond_patience_is_closed_1008(server: Server) -> None:
    alice = await register(server.http, "alice")
    sock = await server.connect(alice)
    for _ in range(30):
        await sock.ws.send("{not json")
    closed = await sock.closed()
    assert closed.rcvd is not None and closed.rcvd.code == 1008
    codes = [f["error"]["code"] for f in sock.pending if f.get("op") == "err"]
    assert codes[:21] == ["bad_json"] * 21
    assert codes[-1] == "too_many_errors"
    assert (await server.http.get("/healthz")).status_code == 200


# --- kicks ----------------------------------------------------------------------------------


async def expect_kicked(sock: Socket, reason: str) -> None:
    """A ``kicked`` event, then a close with 1008, both within a second."""
    started = time.monotonic()
    kicked = await sock.event("kicked", timeout=KICK_WITHIN)
    assert kicked["data"]["reason"] == reason
    assert kicked["data"]["message"]
    closed = await sock.closed(timeout=KICK_WITHIN)
    assert closed.rcvd is not None and closed.rcvd.code == CLOSE_KICKED
    assert time.monotonic() - started <= KICK_WITHIN + 0.5


async def test_logout_kicks_that_session_only(server: Server) -> None:
    laptop = await register(server.http, "alice")
    phone = await login(server.http, "alice")
    bob = await register(server.http, "bob")
    on_laptop = await server.connect(laptop)
    on_phone = await server.connect(phone)
    also_laptop = await server.connect(laptop)  # a second tab of the same session
    bystander = await server.connect(bob)

    out = await server.http.post(f"{API}/auth/logout", headers=laptop.headers)
    assert out.status_code == 204, out.text
    await expect_kicked(on_laptop, "logged_out")
    await expect_kicked(also_laptop, "logged_out")
    await on_phone.assert_quiet()  # the other session is untouched
    await bystander.assert_quiet()
    status, error = await refused(server, additional_headers=laptop.headers)
    assert (status, error["code"]) == (401, "session_revoked")
    await on_phone.close()
    await bystander.close()


async def test_revoking_a_session_kicks_its_socket(server: Server) -> None:
    laptop = await register(server.http, "alice")
    phone = await login(server.http, "alice")
    on_laptop = await server.connect(laptop)
    on_phone = await server.connect(phone)
    sid = await session_id(server, laptop)
    response = await server.http.delete(f"{API}/auth/sessions/{sid}", headers=phone.headers)
    assert response.status_code == 204, response.text
    await expect_kicked(on_laptop, "session_revoked")
    await on_phone.assert_quiet()
    await on_phone.close()


async def test_password_reset_kicks_every_socket_of_the_user(server: Server) -> None:
    laptop = await register(server.http, "alice", email="alice@example.org")
    phone = await login(server.http, "alice")
    bob = await register(server.http, "bob")
    on_laptop = await server.connect(laptop)
    on_phone = await server.connect(phone)
    bystander = await server.connect(bob)

    asked = await server.http.post(f"{API}/auth/password/forgot", json={"login": "alice"})
    assert asked.status_code == 202, asked.text
    await server.ctx.drain()
    async with server.ctx.db.read() as conn:
        mails = await outbox.latest(conn, to="alice@example.org")
    (token,) = re.findall(r"/reset\?token=(\S+)", mails[0].body)
    reset = await server.http.post(
        f"{API}/auth/password/reset", json={"token": token, "password": NEW_PASSWORD}
    )
    assert reset.status_code == 204, reset.text
    await expect_kicked(on_laptop, "password_reset")
    await expect_kicked(on_phone, "password_reset")
    await bystander.assert_quiet()
    await bystander.close()


# --- presence between buddies ------------------------------------------------------------------


async def test_buddies_see_presence_live(server: Server) -> None:
    alice = await register(server.http, "alice")
    bob = await register(server.http, "bob")
    carol = await register(server.http, "carol")  # not a buddy of anyone
    await befriend(server.http, alice, bob)
    sa = await server.connect(alice)
    sc = await server.connect(carol)
    assert await buddy_view(server, alice, "bob") == {"state": "offline", "status": ""}

    sb = await server.connect(bob)
    assert await sa.presence("bob") == {"username": "bob", "state": "online", "status": ""}
    assert await buddy_view(server, bob, "alice") == {"state": "online", "status": ""}
    assert await buddy_view(server, alice, "bob") == {"state": "online", "status": ""}

    steps: list[tuple[dict[str, Any], dict[str, str], dict[str, str]]] = [
        # (op data, bob's own aggregated presence, what alice sees)
        (
            {"state": "busy", "status": "  in a meeting \n"},
            {"state": "busy", "status": "in a meeting"},
            {"state": "busy", "status": "in a meeting"},
        ),
        (
            {"state": "online"},
            {"state": "online", "status": "in a meeting"},
            {"state": "online", "status": "in a meeting"},
        ),
        (
            {"idle": True},
            {"state": "away", "status": "in a meeting"},
            {"state": "away", "status": "in a meeting"},
        ),
        (
            {"idle": False, "status": ""},
            {"state": "online", "status": ""},
            {"state": "online", "status": ""},
        ),
        ({"state": "away"}, {"state": "away", "status": ""}, {"state": "away", "status": ""}),
        (
            {"state": "invisible", "status": "hiding"},
            {"state": "invisible", "status": "hiding"},
            {"state": "offline", "status": ""},
        ),
        (
            {"state": "online", "status": "back"},
            {"state": "online", "status": "back"},
            {"state": "online", "status": "back"},
        ),
    ]
    for data, own, seen in steps:
        assert await sb.call("presence.set", data) == own, data
        assert await sa.presence("bob") == {"username": "bob", **seen}, data
        assert await buddy_view(server, alice, "bob") == seen, data

    await sb.close()
    started = time.monotonic()
    assert await sa.presence("bob") == {"username": "bob", "state": "offline", "status": ""}
    assert time.monotonic() - started < 3
    assert await buddy_view(server, alice, "bob") == {"state": "offline", "status": ""}
    # carol, no buddy of bob's, heard nothing of it all
    await sc.assert_quiet(is_presence("bob"))
    await sc.assert_quiet(is_presence("alice"))
    await sa.close()
    await sc.close()


async def test_unchanged_presence_is_not_announced_again(server: Server) -> None:
    alice = await register(server.http, "alice")
    bob = await register(server.http, "bob")
    await befriend(server.http, alice, bob)
    sa = await server.connect(alice)
    sb = await server.connect(bob)
    await sa.presence("bob")
    await sb.call("presence.set", {"state": "busy"})
    await sa.presence("bob")
    await sb.call("presence.set", {"state": "busy"})
    await sb.call("presence.set", {"status": ""})
    await sa.assert_quiet(is_presence("bob"))
    await sa.close()
    await sb.close()


async def test_several_devices_show_the_most_available(server: Server) -> None:
    alice = await register(server.http, "alice")
    bob = await register(server.http, "bob")
    await befriend(server.http, alice, bob)
    sa = await server.connect(alice)
    desk = await server.connect(bob)
    assert (await sa.presence("bob"))["state"] == "online"
    await desk.call("presence.set", {"state": "busy", "status": "deep work"})
    assert await sa.presence("bob") == {"username": "bob", "state": "busy", "status": "deep work"}

    phone = await server.connect(bob)  # a new device starts with what bob chose last
    await sa.assert_quiet()
    assert await phone.call("presence.set", {"state": "online", "status": ""}) == {
        "state": "online",
        "status": "",
    }
    assert await sa.presence("bob") == {"username": "bob", "state": "online", "status": ""}
    assert await phone.call("presence.set", {"idle": True}) == {
        "state": "busy",
        "status": "deep work",
    }
    assert (await sa.presence("bob"))["state"] == "busy"  # idle phone (away) < busy desk
    await desk.close()
    assert await sa.presence("bob") == {"username": "bob", "state": "away", "status": ""}
    await phone.close()
    assert (await sa.presence("bob"))["state"] == "offline"
    await sa.close()


async def test_presence_never_reaches_a_blocked_user(server: Server) -> None:
    alice = await register(server.http, "alice")
    bob = await register(server.http, "bob")
    await befriend(server.http, alice, bob)
    sa = await server.connect(alice)
    sb = await server.connect(bob)
    await sa.presence("bob")

    blocked = await server.http.post(
        f"{API}/blocks", json={"username": "bob"}, headers=alice.headers
    )
    assert blocked.status_code == 204, blocked.text
    removed = await sb.event("buddy.update", action="removed")
    assert removed["data"]["username"] == "alice"
    assert (await sa.event("buddy.update", action="removed"))["data"]["username"] == "bob"
    await sa.call("presence.set", {"state": "busy", "status": "not for bob"})
    second = await server.connect(alice)
    await second.close()
    await sa.call("presence.set", {"state": "online"})
    await sb.assert_quiet(is_presence("alice"))
    # nor the other way round
    await sb.call("presence.set", {"state": "away"})
    await sa.assert_quiet(is_presence("bob"))
    # a request from bob looks sent to him, but alice hears nothing
    response = await server.http.post(
        f"{API}/buddies/requests", json={"username": "alice"}, headers=bob.headers
    )
    assert response.status_code == 201, response.text
    await sb.event("buddy.request")
    await sa.assert_quiet()
    # and typing to her is refused like to any stranger
    assert (await sb.error("typing", {"to": "alice"}))["code"] == "not_a_buddy"
    await sa.assert_quiet()
    await sa.close()
    await sb.close()


async def test_stealth_towards_one_buddy_only(server: Server) -> None:
    alice = await register(server.http, "alice")
    bob = await register(server.http, "bob")
    carol = await register(server.http, "carol")
    await befriend(server.http, alice, bob)
    await befriend(server.http, alice, carol)
    sb = await server.connect(bob)
    sc = await server.connect(carol)
    sa = await server.connect(alice)
    await sb.presence("alice")
    await sc.presence("alice")

    response = await server.http.patch(
        f"{API}/buddies/bob", json={"stealth": True}, headers=alice.headers
    )
    assert response.status_code == 200, response.text
    assert await sb.presence("alice") == {"username": "alice", "state": "offline", "status": ""}
    await sc.assert_quiet(is_presence("alice"))
    assert await buddy_view(server, bob, "alice") == {"state": "offline", "status": ""}

    await sa.call("presence.set", {"state": "busy", "status": "only carol knows"})
    assert await sc.presence("alice") == {
        "username": "alice",
        "state": "busy",
        "status": "only carol knows",
    }
    await sb.assert_quiet(shown_to_others("alice"))
    assert await buddy_view(server, bob, "alice") == {"state": "offline", "status": ""}
    assert await buddy_view(server, carol, "alice") == {
        "state": "busy",
        "status": "only carol knows",
    }

    response = await server.http.patch(
        f"{API}/buddies/bob", json={"stealth": False}, headers=alice.headers
    )
    assert response.status_code == 200, response.text
    shown = await sb.event("presence", username="alice", state="busy")
    assert shown["data"]["status"] == "only carol knows"
    for sock in (sa, sb, sc):
        await sock.close()


async def test_invisible_activity_is_not_betrayed_to_buddies(server: Server) -> None:
    alice = await register(server.http, "alice")
    bob = await register(server.http, "bob")
    await befriend(server.http, alice, bob)
    sb = await server.connect(bob)
    sa = await server.connect(alice)
    await sb.presence("alice")
    await sa.call("presence.set", {"state": "invisible"})
    assert (await sb.presence("alice"))["state"] == "offline"
    await sa.call("presence.set", {"status": "secretly here"})
    await sb.assert_quiet(is_presence("alice"))


async def test_buddy_events_reach_every_socket_of_both_users(server: Server) -> None:
    alice = await register(server.http, "alice")
    bob = await register(server.http, "bob")
    a1, a2 = await server.connect(alice), await server.connect(alice)
    b1 = await server.connect(bob)
    response = await server.http.post(
        f"{API}/buddies/requests",
        json={"username": "bob", "message": "hi!"},
        headers=alice.headers,
    )
    assert response.status_code == 201, response.text
    request = response.json()
    for sock in (a1, a2, b1):
        event = await sock.event("buddy.request")
        assert event["data"]["request"] == request

    accepted = await server.http.post(
        f"{API}/buddies/requests/{request['id']}/accept", headers=bob.headers
    )
    assert accepted.status_code == 200, accepted.text
    for sock in (a1, a2):
        added = await sock.event("buddy.update", action="added")
        assert added["data"]["username"] == "bob"
        assert added["data"]["request_id"] == request["id"]
        assert added["data"]["buddy"]["username"] == "bob"
        assert added["data"]["buddy"]["state"] == "online"
    added = await b1.event("buddy.update", action="added")
    assert added["data"]["buddy"]["username"] == "alice"
    assert added["data"]["buddy"]["state"] == "online"
    for sock in (a1, a2, b1):
        await sock.close()


# --- typing -----------------------------------------------------------------------------------


async def test_typing_reaches_a_buddy_only(server: Server) -> None:
    alice = await register(server.http, "alice")
    bob = await register(server.http, "bob")
    carol = await register(server.http, "carol")
    await befriend(server.http, alice, bob)
    sa, sb, sc = [await server.connect(u) for u in (alice, bob, carol)]
    assert await sa.call("typing", {"to": "bob"}) == {}
    assert (await sb.event("typing"))["data"] == {"username": "alice", "active": True}
    assert await sa.call("typing", {"to": "BOB", "active": False}) == {}
    assert (await sb.event("typing"))["data"] == {"username": "alice", "active": False}

    assert (await sa.error("typing", {"to": "carol"}))["code"] == "not_a_buddy"
    assert (await sa.error("typing", {"to": "nobody"}))["code"] == "not_a_buddy"
    assert (await sa.error("typing", {"to": "alice"}))["code"] == "not_a_buddy"
    await sc.assert_quiet()
    await sb.assert_quiet()
    for sock in (sa, sb, sc):
        await sock.close()


# --- heartbeats ----------------------------------------------------------------------------------


async def test_silent_socket_is_closed_after_three_heartbeats(make_settings: MakeSettings) -> None:
    async with serve(make_settings, ws_heartbeat=1) as fast:
        alice = await register(fast.http, "alice")
        bob = await register(fast.http, "bob")
        await befriend(fast.http, alice, bob)
        chatty = await fast.connect(alice)
        started = time.monotonic()
        silent = await fast.connect(bob)
        await chatty.presence("bob")

        async def keep_pinging() -> None:
            while True:
                await chatty.call("ping", {})
                await asyncio.sleep(0.5)  # the client's heartbeat pace

        pinger = asyncio.create_task(keep_pinging())
        try:
            closed = await silent.closed(timeout=6)
            elapsed = time.monotonic() - started
        finally:
            pinger.cancel()
            with pytest.raises(asyncio.CancelledError):
                await pinger
        assert closed.rcvd is not None and closed.rcvd.code == 1001
        assert 2.5 <= elapsed <= 6, elapsed
        # the silent one went offline for its buddy; the chatty one is still there
        assert (await chatty.presence("bob"))["state"] == "offline"
        assert "time" in await chatty.call("ping", {})  # connected longer than 3 s, and alive
        await chatty.close()


# --- backpressure: the hub's per-socket queue ----------------------------------------------------


class FakeWebSocket:
    """What Connection's writer uses of a Starlette WebSocket; ``gate`` holds sends."""

    def __init__(self) -> None:
        self.sent: list[str | int] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def send_text(self, text: str) -> None:
        await self.gate.wait()
        self.sent.append(text)

    async def close(self, code: int = 1000) -> None:
        self.sent.append(code)


PRINCIPAL = Principal(
    user_id=1,
    username="alice",
    display_name="Alice",
    session_id="s1",
    roles=frozenset({"user"}),
    permissions=frozenset(),
)


def fake_connection(size: int = 8, session: str = "s1") -> tuple[Connection, FakeWebSocket]:
    fake = FakeWebSocket()
    principal = Principal(
        user_id=PRINCIPAL.user_id,
        username=PRINCIPAL.username,
        display_name=PRINCIPAL.display_name,
        session_id=session,
        roles=PRINCIPAL.roles,
        permissions=PRINCIPAL.permissions,
    )
    conn = Connection(
        id="p.1",
        principal=principal,
        websocket=fake,  # type: ignore[arg-type]
        limit=size,
    )
    return conn, fake


def closing(conn: Connection) -> bool:
    return conn.closing


async def run_writer(conn: Connection) -> None:
    """Until the connection's writer task (alive only while there is something to write)
    has written its backlog and a pending close."""
    async with asyncio.timeout(2):
        while conn.writer is not None:
            await asyncio.wait((conn.writer,))


async def test_connection_writes_in_order_then_closes() -> None:
    conn, fake = fake_connection()
    for i in range(3):
        conn.send(f"f{i}")
    conn.close(1000)
    conn.send("late")  # after close: dropped
    await run_writer(conn)
    assert fake.sent == ["f0", "f1", "f2", 1000]


async def test_a_full_queue_closes_the_slow_socket_with_1013() -> None:
    conn, fake = fake_connection(size=8)
    for i in range(8):
        conn.send(f"f{i}")
    assert not closing(conn)
    conn.send("one too many")
    assert closing(conn)
    conn.send("more")
    assert conn.dropped  # both loops stop at once; the gateway then closes with 1013
    assert conn.pending == 0  # pending frames dropped: the client resumes from its cursor
    await run_writer(conn)
    assert fake.sent == []


async def test_close_after_a_final_frame_sends_it_first() -> None:
    conn, fake = fake_connection(size=8)
    conn.send("f0")
    conn.send('{"op":"ev","type":"kicked"}')
    conn.close(CLOSE_KICKED)
    conn.close(CLOSE_SLOW)  # a second close changes nothing
    await run_writer(conn)
    assert fake.sent == ["f0", '{"op":"ev","type":"kicked"}', CLOSE_KICKED]


async def test_writer_stops_quietly_when_the_peer_is_gone() -> None:
    conn, fake = fake_connection()

    async def broken(text: str) -> None:
        raise ConnectionResetError

    fake.send_text = broken  # type: ignore[method-assign]
    conn.send("f0")
    await run_writer(conn)  # returns, no exception


async def hub_with(*conns: Connection) -> Hub:
    hub = Hub(None)  # type: ignore[arg-type]  # routing needs no context
    for conn in conns:
        await hub.add(conn)
    return hub


def kick_payload(sessions: list[str] | None) -> bytes:
    frame = notify.event_frame(notify.kicked_event("session_revoked", "bye")).decode()
    return b"K" + orjson.dumps({"sessions": sessions, "frame": frame})


async def test_hub_routes_events_and_kicks_by_session() -> None:
    one, fake_one = fake_connection(session="s1")
    two, fake_two = fake_connection(session="s2")
    hub = await hub_with(one, two)
    hub.route("user:1", b'E{"op":"ev","type":"typing"}')
    hub.route("user:2", b'E{"op":"ev","type":"typing","data":"not for alice"}')
    hub.route("room:1", b"Eignored")
    hub.route("user:1", kick_payload(["s1"]))
    assert one.writer is not None and two.writer is not None
    async with asyncio.timeout(2):
        await one.writer
    assert fake_one.sent[0] == '{"op":"ev","type":"typing"}'
    assert orjson.loads(str(fake_one.sent[1]))["type"] == "kicked"
    assert fake_one.sent[2] == CLOSE_KICKED
    assert fake_two.sent == ['{"op":"ev","type":"typing"}']
    assert not two.closing
    hub.route("user:1", kick_payload(None))  # everyone of the user
    async with asyncio.timeout(2):
        await two.writer
    assert fake_two.sent[-1] == CLOSE_KICKED


async def test_kicked_event_survives_a_nearly_full_queue() -> None:
    conn, fake = fake_connection(size=8)
    fake.gate.clear()
    hub = await hub_with(conn)
    for i in range(7):
        conn.send(f"f{i}")
    hub.route("user:1", kick_payload(None))
    fake.gate.set()
    assert conn.writer is not None
    async with asyncio.timeout(2):
        await conn.writer
    kicked = notify.event_frame(notify.kicked_event("session_revoked", "bye")).decode()
    assert fake.sent[-2:] == [kicked, CLOSE_KICKED]


# --- backpressure on real sockets ---------------------------------------------------------------


async def stalled_socket(server: Server, user: User) -> Socket:
    """A socket of ``user`` whose client stops reading after ``hello``: small kernel buffers
    and a one-frame client queue, so the server's side fills up after some tens of KiB."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.setblocking(False)
    await asyncio.get_running_loop().sock_connect(raw, ("127.0.0.1", server.settings.port))
    ws = await websockets.connect(
        server.ws_url,
        sock=raw,
        additional_headers=user.headers,
        max_queue=1,
        ping_interval=None,
        proxy=None,
    )
    sock = Socket(ws)
    await sock.event("hello")
    return sock


def server_side(server: Server, user: User) -> Connection:
    (conn,) = server.hub.connections_of(user.id)
    return conn


async def flood_until_closing(sender: Socket, victim: Connection) -> int:
    """Presence changes of ``sender`` (each a ~600-byte event for its buddies) until the
    server gives up on ``victim``; the number sent (bounded)."""
    for sent in range(1, 3001):
        await sender.call("presence.set", {"status": f"{sent} " + "😀" * 130})
        if victim.closing:
            return sent
    raise AssertionError("the slow socket was never closed")


async def test_slow_consumer_is_closed_1013_without_hurting_others(
    make_settings: MakeSettings,
) -> None:
    async with serve(
        make_settings,
        send_buffer=4096,
        ws_queue=8,
        ws_frames_per_second=1000,
        ws_burst=10000,
    ) as slow_server:
        alice = await register(slow_server.http, "alice")
        bob = await register(slow_server.http, "bob")
        carol = await register(slow_server.http, "carol")
        await befriend(slow_server.http, alice, bob)
        await befriend(slow_server.http, carol, bob)
        stalled = await stalled_socket(slow_server, alice)
        watcher = await slow_server.connect(carol)
        talker = await slow_server.connect(bob)
        assert (await watcher.presence("bob"))["state"] == "online"
        victim = server_side(slow_server, alice)
        sent = 0
        while not victim.closing:
            sent += 1
            assert sent < 3000, "the slow socket was never closed"
            await talker.call("presence.set", {"status": f"{sent} " + "😀" * 130})
            # carol reads as she should: she gets every change, in order, without delay
            status = (await watcher.presence("bob"))["status"]
            assert status.startswith(f"{sent} "), (sent, status)
        assert sent > 8
        await watcher.assert_quiet(is_presence("bob"))
        # the stalled client, once it reads again, finds the 1013 after what got through
        closed = await stalled.closed(timeout=10)
        assert closed.rcvd is not None and closed.rcvd.code == CLOSE_SLOW
        assert len(stalled.pending) < sent
        # and may come back
        again = await slow_server.connect(alice)
        assert "time" in await again.call("ping", {})
        for sock in (again, watcher, talker):
            await sock.close()


async def test_stalled_consumer_is_let_go_promptly(make_settings: MakeSettings) -> None:
    async with serve(
        make_settings,
        send_buffer=4096,
        ws_queue=8,
        ws_frames_per_second=1000,
        ws_burst=10000,
    ) as slow_server:
        alice = await register(slow_server.http, "alice")
        bob = await register(slow_server.http, "bob")
        await befriend(slow_server.http, alice, bob)
        stalled = await stalled_socket(slow_server, alice)
        talker = await slow_server.connect(bob)
        assert await buddy_view(slow_server, bob, "alice") == {"state": "online", "status": ""}
        await flood_until_closing(talker, server_side(slow_server, alice))
        try:
            await slow_server.wait_for(
                lambda: not slow_server.hub.connections_of(alice.id),
                "the hub to let the stalled socket go",
                timeout=3,
            )
            assert (await talker.presence("alice"))["state"] == "offline"
        finally:
            await stalled.closed(timeout=5)  # read again, so the server can finish
            await talker.close()


# --- the gateway's token bucket -------------------------------------------------------------------


def test_token_bucket() -> None:
    bucket = gateway.TokenBucket(rate=5, burst=3)
    start = bucket.stamp
    assert [bucket.take(start) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(start + 0.1) is False  # half a token
    assert bucket.take(start + 0.21) is True  # a whole token after 1/5 s
    assert bucket.take(start + 100) is True  # refills, but only up to the burst
    assert [bucket.take(start + 100) for _ in range(3)] == [True, True, False]


async def test_a_device_can_start_invisible_without_a_flash_of_online(server: Server) -> None:
    alice = await register(server.http, "alice")
    bob = await register(server.http, "bob")
    await befriend(server.http, alice, bob)
    sa = await server.connect(alice)
    sb = await server.connect(bob, query="?state=invisible&status=")
    await sa.assert_quiet()  # no "online" first, then "offline"
    listing = (await server.http.get(f"{API}/buddies", headers=alice.headers)).json()
    assert listing["buddies"][0]["state"] == "offline"
    await sb.close()
    busy = await server.connect(bob, query="?state=busy&status=back%20soon")
    assert await sa.presence("bob") == {"username": "bob", "state": "busy", "status": "back soon"}
    await busy.close()
    await sa.close()


async def test_a_bad_initial_state_refuses_the_upgrade(server: Server) -> None:
    alice = await register(server.http, "alice")
    with pytest.raises(InvalidStatus) as caught:
        await websockets.connect(
            server.ws_url + "?state=sleeping", additional_headers=alice.headers, proxy=None
        )
    assert caught.value.response.status_code == 422
    assert orjson.loads(caught.value.response.body or b"{}")["error"]["code"] == "invalid_state"


async def test_my_other_devices_learn_the_state_i_chose(server: Server) -> None:
    bob = await register(server.http, "bob")
    laptop = await server.connect(bob)
    phone = await server.connect(bob)
    await laptop.call("presence.set", {"state": "busy", "status": "in a meeting"})
    event = await phone.event("presence.self")
    assert event["data"] == {"state": "busy", "status": "in a meeting"}
    await laptop.event("presence.self")  # the device that chose hears it too
    await phone.call("presence.set", {"idle": True})  # idleness is per device: no event
    await laptop.assert_quiet(lambda frame: frame.get("type") == "presence.self")
    await laptop.close()
    await phone.close()


async def test_group_changes_reach_my_other_tabs(server: Server) -> None:
    alice = await register(server.http, "alice")
    tab = await server.connect(alice)
    created = await server.http.post(
        f"{API}/buddies/groups", json={"name": "Work"}, headers=alice.headers
    )
    assert created.status_code == 201, created.text
    assert (await tab.event("buddy.groups"))["data"]["groups"] == created.json()["groups"]
    renamed = await server.http.patch(
        f"{API}/buddies/groups/Work", json={"name": "Office"}, headers=alice.headers
    )
    assert renamed.status_code == 200, renamed.text
    assert "Office" in (await tab.event("buddy.groups"))["data"]["groups"]
    deleted = await server.http.delete(f"{API}/buddies/groups/Office", headers=alice.headers)
    assert deleted.status_code == 200, deleted.text
    assert "Office" not in (await tab.event("buddy.groups"))["data"]["groups"]
    await tab.close()


async def test_nothing_live_comes_before_hello_and_the_summary(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Joining the hub awaits (the bus subscription, the user's rooms); an event published
    for the user meanwhile arrives after hello and offline.summary, never before them."""
    alice = await register(server.http, "alice")
    async with server.app.state.ctx.db.read() as conn:
        user_id = (
            await conn.execute(select(users.c.id).where(users.c.username == "alice"))
        ).scalar_one()
    joining, release = asyncio.Event(), asyncio.Event()
    rooms_of_users = roomcast.rooms_of_users

    async def held(ctx: Any, user_ids: list[int]) -> Any:  # the real read, held open
        joining.set()
        await release.wait()
        return await rooms_of_users(ctx, user_ids)

    monkeypatch.setattr(roomcast, "rooms_of_users", held)

    async def connect() -> Any:
        return await websockets.connect(
            server.ws_url, additional_headers=alice.headers, proxy=None, ping_interval=None
        )

    connecting = asyncio.create_task(connect())
    await joining.wait()  # alice's socket is joining the hub: live events can reach it now
    await notify.to_user(server.app.state.ctx, user_id, BuzzEvent(data=BuzzData(username="bob")))
    release.set()
    sock = Socket(await connecting)
    try:
        types = [(await sock.recv())["type"] for _ in range(3)]
    finally:
        await sock.ws.close()
    assert types == ["hello", "offline.summary", "buzz"]
