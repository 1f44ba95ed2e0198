"""The room suites' harness: a started app on SQLite with bearer users (some with site roles),
each user's event channel tapped on the bus, and shortcuts for the room endpoints."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from fastapi import FastAPI

from echochat.app import create_app
from echochat.bus.base import Subscription
from echochat.config import ResolvedSettings
from echochat.services import notify, roles
from echochat.services.context import Context
from echochat.services.passwords import PasswordHasher
from echochat.store import Database
from echochat.store.migrate import ensure_current
from tests.apps import running
from tests.wsutil import API, PASSWORD, User, bearer

MakeSettings = Callable[..., ResolvedSettings]
Event = dict[str, Any]
MARK = b"M-end-of-feed"


@dataclass
class RoomSite:
    app: FastAPI
    http: httpx.AsyncClient
    feeds: dict[int, Subscription] = field(default_factory=dict)
    orders: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def ctx(self) -> Context:
        ctx: Context = self.app.state.ctx
        return ctx

    async def user(self, username: str, role: str | None = None) -> User:
        """Register ``username``, grant ``role`` (as the CLI would) and tap their events."""
        response = await self.http.post(
            f"{API}/auth/register",
            json={"username": username, "password": PASSWORD, "token_response": True},
        )
        assert response.status_code == 201, response.text
        data = response.json()
        if role is not None:
            assert await roles.grant_role(self.ctx.db, username, role, actor="tests")
        user = User(
            id=data["user"]["id"],
            username=data["user"]["username"],
            token=data["access_token"],
            refresh_token=data["refresh_token"],
        )
        self.feeds[user.id] = await self.ctx.bus.subscribe(notify.user_channel(user.id))
        return user

    async def call(
        self, method: str, path: str, who: User | None, json: Any = None, **params: Any
    ) -> httpx.Response:
        headers = bearer(who.token) if who is not None else {}
        return await self.http.request(
            method, f"{API}{path}", json=json, headers=headers, params=params or None
        )

    async def ok(
        self, method: str, path: str, who: User, json: Any = None, status: int = 200, **params: Any
    ) -> Any:
        response = await self.call(method, path, who, json, **params)
        assert response.status_code == status, response.text
        return response.json() if response.content else None

    async def events(self, who: User, type_prefix: str = "room.") -> list[Event]:
        """The events ``who`` was sent since the last call (those whose type starts with
        ``type_prefix``): a marker published after them bounds the read, so nothing is
        waited for that did not come. Roomcast membership orders read meanwhile are kept in
        ``orders``."""
        sub = self.feeds[who.id]
        await self.ctx.bus.publish(notify.user_channel(who.id), MARK)
        out: list[Event] = []
        async with asyncio.timeout(5):
            while True:
                _, payload = await sub.get()
                if payload == MARK:
                    return out
                if payload.startswith(b"R"):  # a roomcast membership order for the hubs
                    self.orders.setdefault(who.id, []).append(orjson.loads(payload[1:]))
                elif payload.startswith(b"E"):
                    frame = orjson.loads(payload[1:])
                    if frame["type"].startswith(type_prefix):
                        out.append({"type": frame["type"], **frame["data"]})

    async def group(self, owner: User, name: str = "Friends", **body: Any) -> dict[str, Any]:
        room: dict[str, Any] = await self.ok(
            "POST", "/rooms", owner, {"name": name, **body}, status=201
        )
        return room

    async def invite(self, room_id: int, who: User, to: User) -> dict[str, Any]:
        invite: dict[str, Any] = await self.ok(
            "POST", f"/rooms/{room_id}/invites", who, {"username": to.username}, status=201
        )
        return invite

    async def add(self, room_id: int, owner: User, *members: User) -> None:
        """Invite each of ``members`` to the group and accept."""
        for member in members:
            invite = await self.invite(room_id, owner, member)
            await self.ok("POST", f"/invites/{invite['id']}/accept", member)

    async def lobby(self, who: User) -> dict[str, Any]:
        """The seeded public room "Lobby", as ``who`` sees it in the browser."""
        rooms = await self.ok("GET", "/rooms", who, q="Lobby")
        lobby: dict[str, Any] = rooms["rooms"][0]
        assert lobby["name"] == "Lobby", rooms
        return lobby


_template: list[Path] = []


async def _migrated_template() -> Path:
    """A freshly migrated SQLite file, made once per test process: each site starts from a
    copy (migrating costs seconds on a busy machine; copying, milliseconds)."""
    if not _template:
        path = Path(tempfile.mkdtemp(prefix="rooms-template-")) / "echochat.sqlite3"
        db = Database.create(f"sqlite+aiosqlite:///{path}")
        try:
            await ensure_current(db, migrate=True)
        finally:
            await db.close()
        _template.append(path)
    return _template[0]


@asynccontextmanager
async def open_room_site(make_settings: MakeSettings, **overrides: Any) -> AsyncIterator[RoomSite]:
    overrides.setdefault("rate_limit_register_ip", "1000/hour")
    settings = make_settings(**overrides).settings
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(await _migrated_template(), settings.data_dir / "echochat.sqlite3")
    app = create_app(settings)
    async with running(app) as manager:
        # A real argon2id hasher with the cheapest parameters: these suites register many
        # users and test rooms, not password storage.
        app.state.ctx.hasher = PasswordHasher(time_cost=1, memory_cost=1024)
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=settings.public_url) as http:
            site = RoomSite(app=app, http=http)
            try:
                yield site
            finally:
                for sub in site.feeds.values():
                    await sub.close()
