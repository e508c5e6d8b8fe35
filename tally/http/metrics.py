"""`GET /metrics`: Tally's figures in Prometheus' text format, right across `--workers`.

HTTP requests and their latency by route template (`/billing/invoices/{invoice_id}/{format}`,
never the raw path), usage decisions by status and resource and group-commit sizes
(`limits.metrics`), checked-out database connections by engine, and webhook outcomes.

With several workers, `tally serve` points PROMETHEUS_MULTIPROC_DIR at a fresh directory
before they start: each worker writes its figures there and any worker answering `/metrics`
adds them all up (prometheus-client's multiprocess mode). Without it (one process), the
process's own registry is answered.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.db import Database

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
MULTIPROCESS = bool(os.environ.get(MULTIPROCESS_DIR))
"""Whether figures go to the shared directory: decided when prometheus-client is first
imported, as its values are."""
UNMATCHED = "unmatched"
access = logging.getLogger("tally.access")

HTTP_REQUESTS = Counter(
    "tally_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "tally_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template.",
    ["method", "route"],
)
DATABASE_CONNECTIONS = Gauge(
    "tally_db_connections_checked_out",
    "Database connections in use (checked out of the pool), by engine.",
    ["engine"],
    multiprocess_mode="livesum",
)
WEBHOOK_EVENTS = Counter(
    "tally_webhook_events",
    "Provider webhook events received, by outcome (applied, stale, ignored, duplicate, "
    "unknown_customer, or the error code of a refused one).",
    ["outcome"],
)


def route_of(scope: Scope) -> str:
    """The template of the route that answered, or 'unmatched'."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


POOL_SAMPLE_SECONDS = 1.0
"""How often answering requests samples the database pools (and `/metrics` always does)."""


def observe_pool(db: Database) -> None:
    """Sets the checked-out connections gauge from the database's pools."""
    for name, engine in db.pools.items():
        checked_out = getattr(engine.sync_engine.pool, "checkedout", None)
        if callable(checked_out):
            DATABASE_CONNECTIONS.labels(name).set(checked_out())


def exposition() -> bytes:
    """Every figure in the text format: all workers' in multiprocess mode."""
    if not MULTIPROCESS:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def process_exited() -> None:
    """Drops this worker's live gauges from the shared figures (at shutdown)."""
    if MULTIPROCESS:
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


class RequestObserver:
    """Observes every HTTP answer once: counts and times it by route template, writes its
    access line (method, path, route, status, milliseconds) on the `tally.access` logger, and
    samples the database pool."""

    def __init__(self, app: ASGIApp, db: Database) -> None:
        self.app = app
        self.db = db
        self._pool_sampled_at = 0.0
        self._requests: dict[tuple[str, str, str], Any] = {}
        self._latency: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route, method = route_of(scope), scope["method"]
            ended = time.perf_counter()
            seconds = ended - started
            self._count(method, route, status, seconds)
            if ended - self._pool_sampled_at >= POOL_SAMPLE_SECONDS:
                self._pool_sampled_at = ended
                observe_pool(self.db)
            access.info(
                "%s %s %d",
                method,
                scope["path"],
                status,
                extra={
                    "method": method,
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 1),
                },
            )

    def _count(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count and time the answer, through label children kept per route (the client's
        own lookup takes a lock and builds the key on every call)."""
        counted = self._requests.get((method, route, str(status)))
        if counted is None:
            counted = self._requests[(method, route, str(status))] = HTTP_REQUESTS.labels(
                method, route, str(status)
            )
        timed = self._latency.get((method, route))
        if timed is None:
            timed = self._latency[(method, route)] = HTTP_LATENCY.labels(method, route)
        counted.inc()
        timed.observe(seconds)


def routes(db: Database) -> list[BaseRoute]:
    """`GET /metrics`."""

    async def metrics(_: Request) -> Response:
        observe_pool(db)
        return Response(exposition(), media_type=CONTENT_TYPE_LATEST)

    return [Route("/metrics", metrics, methods=["GET"])]
