"""Prometheus metrics of one process, exposed at ``GET /metrics`` to authorised scrapers.

Who may read: a scraper sending ``Authorization: Bearer <metrics_token>`` (the setting), the
way Prometheus' ``authorization`` scrape option sends it, or a signed-in user holding
``admin:basic``. Everyone else gets 401/403. See docs/operations.md.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from echochat.api.deps import Ctx, bearer_token, current_principal
from echochat.domain.errors import Forbidden

__all__ = ["Metrics", "MetricsMiddleware", "router"]

router = APIRouter(include_in_schema=False)


class Metrics:
    """One registry per app, so tests and several apps in one process do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "echochat_http_requests_total",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "echochat_http_request_seconds",
            "HTTP request latency by route template",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "echochat_http_in_flight", "HTTP requests being served", registry=self.registry
        )
        self.sockets = Gauge(
            "echochat_ws_connections", "Open WebSocket connections", registry=self.registry
        )

    def watch_losses(
        self, bus: Callable[[], int], publish: Callable[[], int], pending: Callable[[], int]
    ) -> None:
        """Lost wake-ups (docs/protocol.md): read from the hub and the LostWakeups at each
        scrape."""
        self.registry.register(_Losses(bus, publish, pending))


class _Losses(Collector):
    def __init__(
        self, bus: Callable[[], int], publish: Callable[[], int], pending: Callable[[], int]
    ) -> None:
        self.bus, self.publish, self.pending = bus, publish, pending

    def collect(self) -> Iterable[Metric]:
        yield CounterMetricFamily(
            "echochat_bus_losses",
            "Times this process's bus subscription lost events (overflow or Redis reconnect); "
            "each sent resync to every local socket",
            value=self.bus(),
        )
        yield CounterMetricFamily(
            "echochat_publish_losses",
            "Channels whose wake-up failed to publish after a commit (told resync later)",
            value=self.publish(),
        )
        yield GaugeMetricFamily(
            "echochat_resync_pending",
            "Channels still waiting for their resync (the bus refuses it)",
            value=self.pending(),
        )


class MetricsMiddleware:
    """Counts requests by route *template* (never raw paths: unbounded label values)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or (
                "/static" if scope["path"].startswith("/static/") else "unmatched"
            )
            self.metrics.requests.labels(template, scope["method"], str(status)).inc()
            self.metrics.latency.labels(template).observe(time.perf_counter() - start)


@router.get("/metrics")
async def metrics_endpoint(request: Request, ctx: Ctx) -> Response:
    """Prometheus text for a scraper with the metrics token, or a signed-in admin."""
    token = ctx.settings.metrics_token
    presented = bearer_token(request)
    if not (
        token is not None
        and presented is not None
        and hmac.compare_digest(presented.encode(), token.get_secret_value().encode())
    ):
        principal = await current_principal(request, ctx)
        if not principal.can("admin:basic"):
            raise Forbidden(
                "metrics are for admins and the metrics scraper", code="permission_denied"
            )
    metrics: Metrics = request.app.state.metrics
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
