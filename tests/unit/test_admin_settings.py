"""Server settings an admin changes at run time (issue 8): what GET shows (never a secret),
validation with clear 422s (all or nothing), the audit trail (old -> new, never a secret),
and live application: this process at once, other processes through the bus, start-up
from the database; ``echochat doctor``'s rows with provenance ``admin``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from echochat.app import create_app, make_context
from echochat.services import server_settings
from echochat.services.context import Context
from echochat.store import server_settings as settings_store
from tests.adminutil import ADMIN, AdminSite, MakeSettings, open_admin_site, wait_until
from tests.apps import running
from tests.wsutil import API, PASSWORD, User, expect_error

IP = "192.0.2.44"


@pytest.fixture
async def site(make_settings: MakeSettings) -> AsyncIterator[AdminSite]:
    async with open_admin_site(make_settings, ip=IP) as started:
        yield started


@pytest.fixture
async def alice(site: AdminSite) -> User:
    return await site.user("alice", "admin")


async def settings_of(site: AdminSite, who: User) -> dict[str, dict[str, Any]]:
    response = await site.call("GET", f"{ADMIN}/settings", who)
    assert response.status_code == 200, response.text
    return {s["name"]: s for s in response.json()["settings"]}


async def patch(site: AdminSite, who: User, **changes: Any) -> httpx.Response:
    return await site.call("PATCH", f"{ADMIN}/settings", who, changes)


# --- reading ----------------------------------------------------------------------------------


async def test_every_editable_setting_is_listed(site: AdminSite, alice: User) -> None:
    shown = await settings_of(site, alice)
    assert list(shown) == list(server_settings.EDITABLE)
    for name in (
        "registration_open",
        "email_required",
        "upload_max_bytes",
        "voice_max_room_peers",
        "gif_provider",
        "gif_api_key",
        "message_retention_days",
        "room_capacity",
        "group_max_members",
        "encrypted_group_max_members",
        "rate_limit_dm_account",
        "rate_limit_room_account",
        "rate_limit_room_invite",
        "rate_limit_report_account",
    ):
        assert name in shown, name
    assert shown["registration_open"] == {
        **shown["registration_open"],
        "kind": "bool",
        "value": True,
        "source": "config",
        "updated_by": None,
    }
    voice = shown["voice_max_room_peers"]
    assert (voice["kind"], voice["value"], voice["minimum"]) == ("int", 0, 0)
    assert shown["gif_provider"]["choices"] == ["none", "giphy"]
    assert shown["rate_limit_buzz"]["kind"] == "rate"
    assert shown["gif_api_key"]["kind"] == "secret"
    assert shown["gif_api_key"]["value"] is None
    assert shown["gif_api_key"]["is_set"] is False
    assert all(s["description"] for s in shown.values())


# --- changing: live, audited -------------------------------------------------------------------


async def test_closing_registration_refuses_at_once_and_is_audited(
    site: AdminSite, alice: User
) -> None:
    response = await patch(site, alice, registration_open=False)
    assert response.status_code == 200, response.text
    changed = {s["name"]: s for s in response.json()["settings"]}["registration_open"]
    assert (changed["value"], changed["source"], changed["updated_by"]) == (False, "admin", "alice")
    refused = await site.http.post(
        f"{API}/auth/register", json={"username": "newbie", "password": PASSWORD}
    )
    expect_error(refused, 403, "registration_closed")
    (row,) = await site.audit("settings.update")
    assert (row.actor, row.actor_id, row.ip, row.target) == (
        "alice",
        alice.id,
        IP,
        "registration_open",
    )
    assert row.details == {"old": True, "new": False, "reset": False}

    await patch(site, alice, registration_open=None)  # back to the configured value
    await site.user("newbie")
    assert (await settings_of(site, alice))["registration_open"]["source"] == "config"


async def test_a_changed_rate_limit_applies_to_the_next_request(
    site: AdminSite, alice: User
) -> None:
    response = await patch(site, alice, rate_limit_register_ip="1/hour")
    assert response.status_code == 200, response.text
    assert site.ctx.settings.rate_limit_register_ip == "1/hour"
    await site.user("first")
    refused = await site.http.post(
        f"{API}/auth/register", json={"username": "second", "password": PASSWORD}
    )
    expect_error(refused, 429, "rate_limited")


async def test_a_changed_invite_limit_applies_to_the_next_group_or_invite(
    site: AdminSite, alice: User
) -> None:
    assert site.ctx.settings.rate_limit_room_invite == "30/hour"  # the default
    response = await patch(site, alice, rate_limit_room_invite="2/hour")
    assert response.status_code == 200, response.text
    assert site.ctx.settings.rate_limit_room_invite == "2/hour"
    bob = await site.user("bob")
    group = await site.call("POST", f"{API}/rooms", alice, {"name": "Friends"})
    assert group.status_code == 201, group.text
    invite = await site.call(
        "POST", f"{API}/rooms/{group.json()['id']}/invites", alice, {"username": "bob"}
    )
    assert invite.status_code == 201, invite.text
    expect_error(
        await site.call("POST", f"{API}/rooms", alice, {"name": "More"}), 429, "rate_limited"
    )
    assert (await site.call("POST", f"{API}/rooms", bob, {"name": "Bob's"})).status_code == 201


async def test_values_reset_and_provenance(site: AdminSite, alice: User) -> None:
    configured = site.ctx.settings.upload_max_bytes
    response = await patch(
        site, alice, upload_max_bytes=2048, voice_max_room_peers=8, message_retention_days=30
    )
    assert response.status_code == 200, response.text
    assert site.ctx.settings.upload_max_bytes == 2048
    assert site.ctx.settings.voice_max_room_peers == 8
    assert site.ctx.settings.message_retention_days == 30
    assert site.ctx.base_settings is not None
    assert site.ctx.base_settings.upload_max_bytes == configured  # the configured value stays
    shown = await settings_of(site, alice)
    assert (shown["upload_max_bytes"]["value"], shown["upload_max_bytes"]["source"]) == (
        2048,
        "admin",
    )
    response = await patch(site, alice, upload_max_bytes=None)
    assert response.status_code == 200
    assert site.ctx.settings.upload_max_bytes == configured
    assert site.ctx.settings.voice_max_room_peers == 8  # the others stay
    rows = [r for r in await site.audit("settings.update") if r.target == "upload_max_bytes"]
    assert [r.details for r in rows] == [
        {"old": configured, "new": 2048, "reset": False},
        {"old": 2048, "new": configured, "reset": True},
    ]


async def test_the_gif_key_is_write_only(site: AdminSite, alice: User) -> None:
    secret = "giphy-key-1234567890"
    response = await patch(site, alice, gif_provider="giphy", gif_api_key=secret)
    assert response.status_code == 200, response.text
    assert secret not in response.text
    key = site.ctx.settings.gif_api_key
    assert key is not None and key.get_secret_value() == secret
    shown = await settings_of(site, alice)
    assert shown["gif_api_key"]["value"] is None and shown["gif_api_key"]["is_set"] is True
    assert shown["gif_provider"]["value"] == "giphy"
    rows = await site.audit("settings.update", target="gif_api_key")
    assert rows[0].details == {"was_set": False, "is_set": True, "reset": False}
    everything = json.dumps([dataclasses.asdict(r) for r in await site.audit()], default=str)
    assert secret not in everything
    csv = await site.call("GET", f"{ADMIN}/audit.csv", alice)
    assert secret not in csv.text


# --- refusals ---------------------------------------------------------------------------------


REFUSED: list[tuple[dict[str, Any], str, str | None]] = [
    ({"no_such_thing": 1}, "unknown_setting", "no_such_thing"),
    ({"database_url": "sqlite:///x"}, "unknown_setting", "database_url"),
    ({"secret_key": "x" * 40}, "unknown_setting", "secret_key"),
    ({"registration_open": "yes"}, "invalid_setting", "registration_open"),
    ({"upload_max_bytes": 5}, "invalid_setting", "upload_max_bytes"),
    ({"upload_max_bytes": "2048"}, "invalid_setting", "upload_max_bytes"),
    ({"room_capacity": True}, "invalid_setting", "room_capacity"),
    ({"voice_max_room_peers": -1}, "invalid_setting", "voice_max_room_peers"),
    ({"gif_provider": "tenor"}, "invalid_setting", "gif_provider"),
    ({"gif_api_key": 12}, "invalid_setting", "gif_api_key"),
    ({"rate_limit_dm_account": "lots"}, "invalid_setting", "rate_limit_dm_account"),
    ({"rate_limit_room_invite": "lots"}, "invalid_setting", "rate_limit_room_invite"),
    ({"rate_limit_buzz": "0/minute"}, "invalid_setting", "rate_limit_buzz"),
    ({"rate_limit_buzz": "1/minute;5/hour"}, "invalid_setting", "rate_limit_buzz"),
    ({"rate_limit_buzz": "3/fortnight"}, "invalid_setting", "rate_limit_buzz"),
]


async def test_invalid_changes_are_refused_whole(site: AdminSite, alice: User) -> None:
    before = site.ctx.settings
    expect_error(await patch(site, alice), 422, "invalid_setting")  # nothing to change
    for changes, code, field in REFUSED:
        # a valid change alongside is not applied either: all or nothing
        error = expect_error(await patch(site, alice, **changes, group_max_members=77), 422, code)
        assert field in error["message"], (changes, error)
        assert error["details"] == {"field": field}, (changes, error)
    assert site.ctx.settings == before
    assert (await settings_of(site, alice))["group_max_members"]["source"] == "config"
    assert await site.audit("settings") == []
    nobody = await patch(site, await site.user("bob"), registration_open=False)
    expect_error(nobody, 403, "permission_denied")


# --- other processes and start-up ----------------------------------------------------------


async def test_a_change_reaches_another_process_through_the_bus(
    make_settings: MakeSettings,
) -> None:
    """Two apps on one database and one bus (as two workers): a change through A applies
    on B without a restart."""
    settings = make_settings(rate_limit_register_ip="1000/hour").settings
    ctx_a = make_context(settings)
    ctx_b = dataclasses.replace(make_context(settings), bus=ctx_a.bus)
    app_a, app_b = create_app(settings, ctx=ctx_a), create_app(settings, ctx=ctx_b)
    async with running(app_a) as a, running(app_b):
        transport = httpx.ASGITransport(app=a.app, client=(IP, 1))
        async with httpx.AsyncClient(transport=transport, base_url=settings.public_url) as http:
            site = AdminSite(app=app_a, http=http)
            alice = await site.user("alice", "admin")
            assert ctx_b.settings.room_capacity == 1000
            response = await patch(site, alice, room_capacity=250, gif_provider="giphy")
            assert response.status_code == 200, response.text
            await wait_until(lambda: ctx_b.settings.room_capacity == 250, "B applied the change")
            assert ctx_b.settings.gif_provider == "giphy"
            await patch(site, alice, room_capacity=None)
            await wait_until(lambda: ctx_b.settings.room_capacity == 1000, "B applied the reset")


async def test_overrides_apply_at_start_and_bad_ones_are_skipped(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings().settings
    async with open_admin_site(make_settings):  # creates the database
        pass
    ctx: Context = make_context(settings)
    async with ctx.db.transaction() as conn:
        await settings_store.put_txn(conn, "group_max_members", 42, by="alice")
        await settings_store.put_txn(conn, "upload_max_bytes", 5, by="old version")
    await ctx.db.close()
    async with open_admin_site(make_settings) as site:
        assert site.ctx.settings.group_max_members == 42
        assert site.ctx.settings.upload_max_bytes == settings.upload_max_bytes
        resolved = make_settings()
        rows = {
            name: (shown, source)
            for name, shown, source in server_settings.doctor_rows(
                resolved, await server_settings.stored(site.ctx.db)
            )
        }
    assert rows["group_max_members"] == ("42", "admin")
    assert rows["upload_max_bytes"] == (str(settings.upload_max_bytes), "default")
    assert rows["registration_open"] == ("true", "default")
    assert rows["room_capacity"] == ("1000", "default")
