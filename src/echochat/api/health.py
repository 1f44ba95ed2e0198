"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

from fastapi import APIRouter

from echochat.api.deps import Ctx
from echochat.api.errors import error_body
from echochat.api.responses import JSON
from echochat.services import health

__all__ = ["router"]

router = APIRouter(tags=["ops"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the database and the bus answer")
async def readyz(ctx: Ctx) -> JSON:
    result = await health.readiness(ctx)
    if result.ready:
        return JSON({"status": "ready", "checks": result.checks})
    failing = "; ".join(f"{k}: {v}" for k, v in result.checks.items() if v != "ok")
    body = error_body("not_ready", failing, checks=result.checks)
    return JSON(body, status_code=503)
