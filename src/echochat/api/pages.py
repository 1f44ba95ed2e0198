"""Server-rendered page shells (Jinja). Pages carry no inline script: modules load from
/static, and data reaches them through the API."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, select_autoescape

from echochat import __version__

__all__ = ["router", "templates"]

templates = Jinja2Templates(
    env=Environment(
        loader=PackageLoader("echochat.web", "templates"),
        autoescape=select_autoescape(default=True),
    )
)

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
async def landing(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "index.html", {"version": __version__})
