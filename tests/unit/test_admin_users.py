"""Administration of users over HTTP (issue 8): whoami, search, view, roles, bans, mutes and
signing a user out everywhere; who may do what (admin vs moderator); the last admin; the
audit trail of each action. Bans and sign-outs are checked end to end on a real server:
the user's socket gets ``kicked`` and closes, refresh fails, login is refused with the reason.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from echochat.domain.errors import Conflict, Forbidden
from echochat.services import admin, roles
from echochat.services.accounts import authenticate
from echochat.store import audit
from tests.adminutil import ADMIN, AdminSite, MakeSettings, open_admin_site
from tests.unit.test_gateway import expect_kicked
from tests.wsutil import API, PASSWORD, expect_error, login, register, serve

IP = "198.51.100.23"


@pytest.fixture
async def site(make_settings: MakeSettings) -> AsyncIterator[AdminSite]:
    async with open_admin_site(make_settings, ip=IP) as started:
        yield started


# --- whoami -----------------------------------------------------------------------------------


async def test_whoami_explains_a_missing_panel(site: AdminSite) -> None:
    bob = await site.user("bob")
    response = await site.call("GET", f"{ADMIN}/whoami", bob)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user"] == {"id": bob.id, "username": "bob", "display_name": "bob"}
    assert body["roles"] == ["user"]
    assert body["permissions"] == []
    assert body["panel"] is False
    assert body["database"]["url"] == site.ctx.db.masked_url
    assert body["database"]["name"] == site.ctx.db.name
    assert "no admin or moderator role" in body["explanation"]
    assert "echochat admin grant bob" in body["explanation"]


async def test_whoami_of_staff(site: AdminSite) -> None:
    alice = await site.user("alice", "admin")
    mod = await site.user("mod", "moderator")
    body = (await site.call("GET", f"{ADMIN}/whoami", alice)).json()
    assert body["panel"] is True
    assert body["roles"] == ["admin", "user"]
    assert set(body["permissions"]) == {
        "admin:basic",
        "users:manage",
        "rooms:manage",
        "settings:manage",
        "reports:review",
        "audit:read",
    }
    body = (await site.call("GET", f"{ADMIN}/whoami", mod)).json()
    assert body["panel"] is True
    assert body["permissions"] == ["admin:basic", "reports:review", "rooms:manage"]


# --- listing and viewing ----------------------------------------------------------------------


async def test_search_pages_and_fields(site: AdminSite) -> None:
    alice = await site.user("alice", "admin")
    await site.user("bob", display_name="Bobby Tables", email="bob@example.org")
    await site.user("carol", email="carol@school.example")
    await site.user("dave")
    await site.login("dave")  # a second session

    body = (await site.call("GET", f"{ADMIN}/users?limit=2", alice)).json()
    assert body["total"] == 4
    assert [u["username"] for u in body["users"]] == ["alice", "bob"]
    body = (await site.call("GET", f"{ADMIN}/users?limit=2&offset=2", alice)).json()
    assert [u["username"] for u in body["users"]] == ["carol", "dave"]
    dave = body["users"][1]
    assert dave["sessions"] == 2
    assert dave["last_seen_at"] is not None
    assert dave["banned"] is False and dave["muted_until"] is None
    assert dave["roles"] == ["user"]

    async def found(q: str) -> list[str]:
        response = await site.call("GET", f"{ADMIN}/users?q={q}", alice)
        assert response.status_code == 200, response.text
        return [u["username"] for u in response.json()["users"]]

    assert await found("TABLES") == ["bob"]  # display name, any case
    assert await found("school") == ["carol"]  # email
    assert await found("AR") == ["carol"]  # username
    assert await found("l") == ["alice", "bob", "carol"]  # username or display name
    assert await found("%") == []  # LIKE wildcards are literal
    assert await found("_") == []

    assert dave["devices"] is None  # the list does not carry devices
    one = await site.call("GET", f"{ADMIN}/users/ALICE", alice)
    assert one.status_code == 200, one.text
    assert one.json()["roles"] == ["admin", "user"]
    devices = (await site.call("GET", f"{ADMIN}/users/dave", alice)).json()["devices"]
    assert len(devices) == 2
    assert {d["ip"] for d in devices} == {IP}
    assert set(devices[0]) == {"label", "ip", "created_at", "last_seen_at"}  # no session id
    expect_error(await site.call("GET", f"{ADMIN}/users/nobody", alice), 404, "user_not_found")
    bad = await site.call("GET", f"{ADMIN}/users?limit=0", alice)
    assert bad.status_code == 422


# --- roles ------------------------------------------------------------------------------------


async def test_roles_set_through_the_api_are_audited_with_actor_and_ip(site: AdminSite) -> None:
    alice = await site.user("alice", "admin")
    bob = await site.user("bob")
    response = await site.call(
        "PATCH", f"{ADMIN}/users/bob", alice, {"roles": ["moderator", "user"]}
    )
    assert response.status_code == 200, response.text
    assert response.json()["roles"] == ["moderator", "user"]
    # takes effect on bob's next request
    stats = await site.call("GET", f"{ADMIN}/stats", bob)
    assert stats.status_code == 200, stats.text

    response = await site.call("PATCH", f"{ADMIN}/users/bob", alice, {"roles": ["admin"]})
    assert response.json()["roles"] == ["admin", "user"]
    rows = await site.audit("role", target="bob")
    assert [(r.action, r.details["role"]) for r in rows] == [
        ("role.grant", "moderator"),
        ("role.grant", "admin"),
        ("role.revoke", "moderator"),
    ]
    assert {(r.actor, r.actor_id, r.ip) for r in rows} == {("alice", alice.id, IP)}

    unknown = await site.call("PATCH", f"{ADMIN}/users/bob", alice, {"roles": ["wizard"]})
    assert unknown.status_code == 422
    extra = await site.call("PATCH", f"{ADMIN}/users/bob", alice, {"role": "admin"})
    assert extra.status_code == 422


async def test_the_last_admin_can_be_neither_demoted_nor_banned(site: AdminSite) -> None:
    alice = await site.user("alice", "admin")
    await site.user("bob")
    demote = await site.call("PATCH", f"{ADMIN}/users/alice", alice, {"roles": ["moderator"]})
    expect_error(demote, 409, "last_admin")
    ban = await site.call("PATCH", f"{ADMIN}/users/alice", alice, {"banned": True})
    expect_error(ban, 409, "last_admin")
    with pytest.raises(Conflict) as refused:
        await admin.set_ban_as_operator(site.ctx, "alice", banned=True, actor="cli:root")
    assert refused.value.code == "last_admin"
    me = (await site.call("GET", f"{ADMIN}/whoami", alice)).json()
    assert me["roles"] == ["admin", "user"]  # nothing changed, not even the moderator grant
    rows = await site.audit("role", target="alice")
    assert [(r.action, r.actor) for r in rows] == [("role.grant", "tests")]  # the setup only

    # with a second admin, alice may step down; then bob is the last one
    assert (await site.call("PATCH", f"{ADMIN}/users/bob", alice, {"roles": ["admin"]})).is_success
    step_down = await site.call("PATCH", f"{ADMIN}/users/alice", alice, {"roles": []})
    assert step_down.status_code == 200, step_down.text
    assert step_down.json()["roles"] == ["user"]
    forbidden = await site.call("GET", f"{ADMIN}/users", alice)
    expect_error(forbidden, 403, "permission_denied")
    with pytest.raises(Conflict):
        await roles.revoke_role(site.ctx.db, "bob", "admin", actor="cli:root")


async def test_a_banned_admin_does_not_count(site: AdminSite) -> None:
    alice = await site.user("alice", "admin")
    await site.user("bob", "admin")
    ban = await site.call("PATCH", f"{ADMIN}/users/bob", alice, {"banned": True})
    assert ban.status_code == 200, ban.text
    # bob is banned, so alice is the last active admin now
    demote = await site.call("PATCH", f"{ADMIN}/users/alice", alice, {"roles": []})
    expect_error(demote, 409, "last_admin")


# --- moderator vs admin -----------------------------------------------------------------------


async def test_moderator_and_admin_matrix(site: AdminSite) -> None:
    alice = await site.user("alice", "admin")
    mod = await site.user("mod", "moderator")
    await site.user("mod2", "moderator")
    await site.user("bob")
    matrix = [
        # (method, path, body, admin status, moderator status)
        ("GET", f"{ADMIN}/stats", None, 200, 200),
        ("GET", f"{ADMIN}/users", None, 200, 403),
        ("GET", f"{ADMIN}/users/bob", None, 200, 403),
        ("PATCH", f"{ADMIN}/users/bob", {"muted_minutes": 5}, 200, 403),
        ("POST", f"{ADMIN}/users/bob/logout", None, 200, 403),
        ("GET", f"{ADMIN}/settings", None, 200, 403),
        ("PATCH", f"{ADMIN}/settings", {"room_capacity": 500}, 200, 403),
        ("GET", f"{ADMIN}/audit", None, 200, 403),
        ("GET", f"{ADMIN}/audit.csv", None, 200, 403),
    ]
    for method, path, body, as_admin, as_mod in matrix:
        response = await site.call(method, path, mod, body)
        assert response.status_code == as_mod, (path, response.text)
        response = await site.call(method, path, alice, body)
        assert response.status_code == as_admin, (path, response.text)

    # acting on a report, a moderator may mute or ban a plain user, never staff
    moderator = await authenticate(site.ctx, mod.token)
    until = await admin.set_mute(site.ctx, moderator, "bob", minutes=10, reason="spam")
    assert until is not None
    await admin.set_ban(site.ctx, moderator, "bob", banned=True, reason="spam")
    with pytest.raises(Forbidden):  # lifting a ban is for users:manage
        await admin.set_ban(site.ctx, moderator, "bob", banned=False)
    for staff in ("alice", "mod2"):
        with pytest.raises(Forbidden):
            await admin.set_ban(site.ctx, moderator, staff, banned=True)
        with pytest.raises(Forbidden):
            await admin.set_mute(site.ctx, moderator, staff, minutes=5)
    with pytest.raises(Forbidden):
        await admin.set_roles(site.ctx, moderator, "bob", ["moderator"])
    with pytest.raises(Conflict):
        await admin.set_mute(site.ctx, moderator, "mod", minutes=5)  # not yourself


# --- bans -------------------------------------------------------------------------------------


async def test_ban_kicks_revokes_and_refuses_login_with_the_reason(
    make_settings: MakeSettings,
) -> None:
    async with serve(make_settings) as server:
        alice = await register(server.http, "alice")
        assert await roles.grant_role(server.ctx.db, "alice", "admin", actor="tests")
        bob = await register(server.http, "bob")
        bob_phone = await login(server.http, "bob")
        carol = await register(server.http, "carol")
        laptop = await server.connect(bob)
        phone = await server.connect(bob_phone)
        bystander = await server.connect(carol)
        for sock in (laptop, phone, bystander):
            await sock.call("ping")  # answered after the device is in presence
        stats = await server.http.get(f"{ADMIN}/stats", headers=alice.headers)
        assert stats.json()["online_users"] == 2  # bob (two devices) and carol, from presence

        response = await server.http.patch(
            f"{ADMIN}/users/bob",
            json={"banned": True, "ban_reason": "spamming the lobby"},
            headers=alice.headers,
        )
        assert response.status_code == 200, response.text
        assert response.json()["banned"] is True
        assert response.json()["ban_reason"] == "spamming the lobby"
        assert response.json()["sessions"] == 0
        await expect_kicked(laptop, "banned")
        await expect_kicked(phone, "banned")
        await bystander.assert_quiet()

        refreshed = await server.http.post(
            f"{API}/auth/refresh", json={"refresh_token": bob.refresh_token}
        )
        assert refreshed.status_code in (401, 403), refreshed.text
        old_token = await server.http.get(f"{API}/me", headers=bob.headers)
        assert old_token.status_code in (401, 403), old_token.text
        signed_in = await server.http.post(
            f"{API}/auth/login", json={"username": "bob", "password": PASSWORD}
        )
        error = expect_error(signed_in, 403, "banned")
        assert "spamming the lobby" in error["message"]

        # unban: bob may sign in again; both steps audited
        response = await server.http.patch(
            f"{ADMIN}/users/bob", json={"banned": False}, headers=alice.headers
        )
        assert response.status_code == 200 and response.json()["banned"] is False
        assert response.json()["ban_reason"] is None
        await login(server.http, "bob")
        async with server.ctx.db.read() as conn:
            rows = await audit.page(conn, target="bob")
        assert [r.action for r in reversed(rows)] == ["user.ban", "user.unban"]
        assert rows[1].details == {"reason": "spamming the lobby", "sessions_revoked": 2}
        await bystander.close()


async def test_sign_out_everywhere_kicks_every_device(make_settings: MakeSettings) -> None:
    async with serve(make_settings) as server:
        alice = await register(server.http, "alice")
        assert await roles.grant_role(server.ctx.db, "alice", "admin", actor="tests")
        bob = await register(server.http, "bob")
        phone = await login(server.http, "bob")
        sockets = [await server.connect(bob), await server.connect(phone)]
        response = await server.http.post(f"{ADMIN}/users/bob/logout", headers=alice.headers)
        assert response.status_code == 200, response.text
        assert response.json() == {"username": "bob", "sessions_revoked": 2}
        for sock in sockets:
            await expect_kicked(sock, "session_revoked")
        me = await server.http.get(f"{API}/me", headers=phone.headers)
        expect_error(me, 401, "session_revoked")
        await login(server.http, "bob")  # not a ban: bob may sign in again
        missing = await server.http.post(f"{ADMIN}/users/zed/logout", headers=alice.headers)
        expect_error(missing, 404, "user_not_found")


async def test_ban_refusals(site: AdminSite) -> None:
    alice = await site.user("alice", "admin")
    await site.user("bob")
    expect_error(
        await site.call("PATCH", f"{ADMIN}/users/zed", alice, {"banned": True}),
        404,
        "user_not_found",
    )
    for loose in ("yes", 1, "true"):  # booleans only
        bad = await site.call("PATCH", f"{ADMIN}/users/bob", alice, {"banned": loose})
        assert bad.status_code == 422, bad.text
    long = await site.call(
        "PATCH", f"{ADMIN}/users/bob", alice, {"banned": True, "ban_reason": "x" * 501}
    )
    assert long.status_code == 422
    # unbanning someone not banned changes nothing and writes nothing
    ok = await site.call("PATCH", f"{ADMIN}/users/bob", alice, {"banned": False})
    assert ok.status_code == 200
    assert await site.audit("user", target="bob") == []


# --- mutes ------------------------------------------------------------------------------------


async def test_mute_and_lift(site: AdminSite) -> None:
    alice = await site.user("alice", "admin")
    await site.user("bob")
    before = datetime.now(UTC)
    response = await site.call(
        "PATCH", f"{ADMIN}/users/bob", alice, {"muted_minutes": 30, "mute_reason": "cool off"}
    )
    assert response.status_code == 200, response.text
    until = datetime.fromisoformat(response.json()["muted_until"])
    assert before + timedelta(minutes=29) < until < before + timedelta(minutes=31)
    response = await site.call("PATCH", f"{ADMIN}/users/bob", alice, {"muted_minutes": 0})
    assert response.json()["muted_until"] is None
    rows = await site.audit("user", target="bob")
    assert [r.action for r in rows] == ["user.mute", "user.unmute"]
    assert rows[0].details["minutes"] == 30 and rows[0].details["reason"] == "cool off"
    assert rows[0].ip == IP
    for minutes in (-1, 366 * 24 * 60 + 1, True, "5", 2.5):
        bad = await site.call("PATCH", f"{ADMIN}/users/bob", alice, {"muted_minutes": minutes})
        assert bad.status_code == 422, bad.text
    myself = await site.call("PATCH", f"{ADMIN}/users/alice", alice, {"muted_minutes": 5})
    expect_error(myself, 409, "self_action")
