"""The SDK's admin helpers (client/admin.py) against the real app: what a moderation bot
would do, and the server's refusals arriving as the SDK's typed errors."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator

import httpx
import pytest

from echochat.client import EchoChatClient
from echochat.client.admin import Admin
from echochat.client.errors import ConflictError, ForbiddenError
from tests.adminutil import AdminSite, MakeSettings, open_admin_site
from tests.wsutil import PASSWORD


@pytest.fixture
async def site(make_settings: MakeSettings) -> AsyncIterator[AdminSite]:
    async with open_admin_site(make_settings) as started:
        yield started


@pytest.fixture
async def sdk(site: AdminSite) -> AsyncIterator[EchoChatClient]:
    transport = httpx.ASGITransport(app=site.app, client=("192.0.2.9", 1))
    async with EchoChatClient(str(site.http.base_url), transport=transport) as client:
        yield client


async def test_admin_helpers(site: AdminSite, sdk: EchoChatClient) -> None:
    await site.user("root", "admin")
    await site.user("mallory", email="mallory@example.org")
    await sdk.login("root", PASSWORD)
    admin = Admin(sdk)

    me = await admin.whoami()
    assert me["panel"] is True and "users:manage" in me["permissions"]
    page = await admin.users("mall")
    assert [u["username"] for u in page["users"]] == ["mallory"]
    banned = await admin.ban("mallory", reason="spam")
    assert banned["banned"] is True and banned["ban_reason"] == "spam"
    assert (await admin.unban("mallory"))["banned"] is False
    assert (await admin.mute("mallory", 10))["muted_until"] is not None
    assert (await admin.set_roles("mallory", ["moderator"]))["roles"] == ["moderator", "user"]
    assert (await admin.user("mallory"))["sessions"] == 0  # the ban ended them
    assert (await site.login("mallory")).status_code == 200
    assert (await admin.user("mallory"))["sessions"] == 1
    assert await admin.sign_out_everywhere("mallory") == 1

    settings = await admin.update_settings(room_capacity=300, gif_api_key="k-123")
    assert settings["room_capacity"]["value"] == 300
    assert settings["gif_api_key"] == {**settings["gif_api_key"], "value": None, "is_set": True}
    assert (await admin.settings())["room_capacity"]["source"] == "admin"

    log = await admin.audit(action="user", limit=2)
    assert len(log["entries"]) == 2 and log["next_before"] is not None
    rows = list(csv.reader(io.StringIO(await admin.audit_csv(target="mallory"))))
    assert {r[3] for r in rows[1:]} >= {"user.ban", "user.unban", "user.mute", "role.grant"}
    assert len((await admin.stats())["days"]) == 30

    with pytest.raises(ConflictError) as last:
        await admin.set_roles("root", [])
    assert last.value.code == "last_admin"


async def test_refusals_are_typed(site: AdminSite, sdk: EchoChatClient) -> None:
    await site.user("pleb")
    await sdk.login("pleb", PASSWORD)
    admin = Admin(sdk)
    assert (await admin.whoami())["panel"] is False
    with pytest.raises(ForbiddenError) as refused:
        await admin.users()
    assert refused.value.code == "permission_denied"
