"""The admin panel's own files, served only to users holding ``admin:basic``.

The panel's scripts and styles live in ``web/admin/assets`` (never under ``/static``), so a
normal user's page and static tree hold no trace of them. ``GET /admin/assets/{path}``
checks the browser's session cookie the way pages do (an expired access token is fine: the
page's script refreshes it) and answers 401 without a live session, 403 without the
permission, 404 for anything that is not one of the panel's files. Every answer carries
``Cache-Control: no-store``: the files depend on who asks, so no cache may keep them.

The panel's markup is ``web/admin/templates/_admin_panel.html``, included by ``chat.html``
only for the same users (see api/pages.py).
"""

from __future__ import annotations

import re
from importlib import resources
from importlib.resources.abc import Traversable

from fastapi import APIRouter, Request
from fastapi.responses import Response

from echochat.api.cookies import read_access_cookie
from echochat.api.deps import Ctx, bearer_token
from echochat.api.errors import error_body
from echochat.api.responses import JSON
from echochat.domain.errors import DomainError
from echochat.services.accounts import authenticate

__all__ = ["ADMIN_PERMISSION", "router"]

ADMIN_PERMISSION = "admin:basic"

router = APIRouter(include_in_schema=False)

_TYPES = {
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
}
# Lower-case names in plain folders: no "..", no dot files, no other kinds of file.
_NAME = re.compile(r"^(?:[a-z0-9_-]+/)*[a-z0-9_-]+\.(js|css|svg)$")
_NO_STORE = {"Cache-Control": "no-store", "Vary": "Cookie"}


def _assets() -> Traversable:
    return resources.files("echochat.web").joinpath("admin", "assets")


def _refuse(status: int, code: str, message: str) -> Response:
    return JSON(error_body(code, message), status_code=status, headers=_NO_STORE)


@router.get("/admin/assets/{path:path}")
async def admin_asset(path: str, request: Request, ctx: Ctx) -> Response:
    token = bearer_token(request) or read_access_cookie(request, ctx.settings)
    if not token:
        return _refuse(401, "not_authenticated", "sign in first")
    try:
        principal = await authenticate(ctx, token, allow_expired=True)
    except DomainError as exc:
        return _refuse(exc.status, exc.code, exc.message)
    if not principal.can(ADMIN_PERMISSION):
        return _refuse(403, "permission_denied", f"you need the permission {ADMIN_PERMISSION}")
    match = _NAME.fullmatch(path)
    if match is None:
        return _refuse(404, "not_found", "no such file")
    node = _assets().joinpath(*path.split("/"))
    if not node.is_file():
        return _refuse(404, "not_found", "no such file")
    return Response(node.read_bytes(), media_type=_TYPES[match.group(1)], headers=_NO_STORE)
