"""Administration in the SDK: thin helpers over ``/api/v1/admin`` for scripts and bots.

:class:`Admin` works over a signed-in :class:`EchoChatClient`; each method needs the
permission the server checks (docs/security.md, "Administration") and raises the usual
:class:`~echochat.client.errors.EchoChatError` subclasses (``ForbiddenError``
``permission_denied``, ``ConflictError`` ``last_admin``, ...). Answers are the server's JSON
objects as dicts (the shapes are in the OpenAPI schema at ``/api/v1/openapi.json``)::

    async with EchoChatClient(url) as chat:
        await chat.login("root", password)
        admin = Admin(chat)
        await admin.ban("mallory", reason="spam")
        await admin.update_settings(registration_open=False)
        csv_text = await admin.audit_csv(action="user")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from echochat.client.http import EchoChatClient

__all__ = ["Admin"]

Json = dict[str, Any]


def _user_path(username: str) -> str:
    return f"/admin/users/{quote(username, safe='')}"


def _filters(**values: str | int | None) -> dict[str, str | int]:
    return {k: v for k, v in values.items() if v is not None and v != ""}


class Admin:
    def __init__(self, client: EchoChatClient) -> None:
        self._client = client

    async def _json(self, method: str, path: str, *, json: Any = None, params: Any = None) -> Json:
        response = await self._client._request(method, path, json=json, params=params)
        data: Json = response.json()
        return data

    async def whoami(self) -> Json:
        """My roles and permissions, and the database they were read from (anyone)."""
        return await self._json("GET", "/admin/whoami")

    # --- users (users:manage) ------------------------------------------------------------

    async def users(self, q: str = "", *, limit: int = 50, offset: int = 0) -> Json:
        """``{"total", "limit", "offset", "users": [...]}``: username, display name or email
        containing ``q``."""
        return await self._json(
            "GET", "/admin/users", params=_filters(q=q, limit=limit, offset=offset)
        )

    async def user(self, username: str) -> Json:
        return await self._json("GET", _user_path(username))

    async def update_user(self, username: str, **changes: Any) -> Json:
        """Any of ``roles`` (the full list wanted), ``banned`` + ``ban_reason``,
        ``muted_minutes`` (0 lifts) + ``mute_reason``; the user afterwards."""
        return await self._json("PATCH", _user_path(username), json=changes)

    async def ban(self, username: str, *, reason: str = "") -> Json:
        return await self.update_user(username, banned=True, ban_reason=reason)

    async def unban(self, username: str) -> Json:
        return await self.update_user(username, banned=False)

    async def mute(self, username: str, minutes: int, *, reason: str = "") -> Json:
        return await self.update_user(username, muted_minutes=minutes, mute_reason=reason)

    async def set_roles(self, username: str, roles: list[str]) -> Json:
        return await self.update_user(username, roles=roles)

    async def sign_out_everywhere(self, username: str) -> int:
        """End every session of the user; how many were live."""
        data = await self._json("POST", f"{_user_path(username)}/logout")
        return int(data["sessions_revoked"])

    # --- settings (settings:manage) ------------------------------------------------------

    async def settings(self) -> dict[str, Json]:
        """Every editable setting by name (``value``; a secret only as ``is_set``)."""
        data = await self._json("GET", "/admin/settings")
        return {item["name"]: item for item in data["settings"]}

    async def update_settings(self, **changes: Any) -> dict[str, Json]:
        """Change settings on every process at once (None: back to the configured value)."""
        data = await self._json("PATCH", "/admin/settings", json=changes)
        return {item["name"]: item for item in data["settings"]}

    # --- audit log (audit:read) and dashboard (admin:basic) ---------------------------------

    async def audit(
        self,
        *,
        action: str = "",
        actor: str = "",
        target: str = "",
        before: int | None = None,
        limit: int = 100,
    ) -> Json:
        """``{"entries": [...], "next_before"}``, newest first."""
        params = _filters(action=action, actor=actor, target=target, before=before, limit=limit)
        return await self._json("GET", "/admin/audit", params=params)

    async def audit_csv(self, *, action: str = "", actor: str = "", target: str = "") -> str:
        """The filtered audit log as CSV text."""
        response = await self._client._request(
            "GET", "/admin/audit.csv", params=_filters(action=action, actor=actor, target=target)
        )
        return response.text

    async def stats(self) -> Json:
        """Online now, users, and per day for 30 days: DMs, room messages, sign-ups."""
        return await self._json("GET", "/admin/stats")
