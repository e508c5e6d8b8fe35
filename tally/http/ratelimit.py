"""Rate limits on `/graphql` and `/v1`: token buckets per API key and per organization, and a
bound on each organization's requests in flight.

The middleware authenticates the caller first (a request without a valid key is charged
nothing and answered 401 by its route), then takes one token from the key's bucket (keyed by
the key's id) and one from its organization's; an empty bucket answers `429` with
`Retry-After` (`RATE_LIMITED`: a JSON error on `/v1`, a GraphQL error on `/graphql`). At most
`organization_concurrency` requests of one organization run at once; the next ones wait their
turn (a bounded queue, `429` past it), so one organization cannot hold all of a worker's
database connections. The buckets and the queue are per process: with N workers an
organization gets up to N times the rates.

The middleware also writes the key's last use (at most once a minute) and makes the caller the
actor of the audit log for the request. Its authentication is handed to the route
(`authenticated`), so a request is authenticated once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from core import audit
from core.auth import Principal, bearer_secret
from core.config import Rate
from core.orgs import Organization
from graph.errors import rate_limited
from tally.http.errors import error_response
from tally.runtime import Runtime

GUARDED_PREFIXES = ("/graphql", "/v1/")
WAITING_PER_SLOT = 16
"""How many requests of an organization may wait per request it may have in flight."""
MAX_BUCKETS = 100_000
"""Past this many buckets, the full ones (idle long enough to refill) are forgotten."""
_STATE = "tally.authenticated"

Found = tuple[Principal, Organization] | None


@dataclass
class TokenBucket:
    """`rate.burst` tokens at most, refilled at `rate.per_second`; a request takes one."""

    rate: Rate
    tokens: float
    updated: float

    def refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(float(self.rate.burst), self.tokens + elapsed * self.rate.per_second)
        self.updated = now

    def wait(self, now: float) -> float:
        """Seconds until a token is there (0: one is there now)."""
        self.refill(now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate.per_second

    @property
    def full(self) -> bool:
        return self.tokens >= self.rate.burst


@dataclass
class Buckets:
    """One bucket per name (a key's id, an organization's), all at one rate."""

    rate: Rate
    buckets: dict[str, TokenBucket] = field(default_factory=dict)

    def bucket(self, name: str, now: float) -> TokenBucket:
        found = self.buckets.get(name)
        if found is None:
            if len(self.buckets) >= MAX_BUCKETS:
                self._forget_full(now)
            found = self.buckets[name] = TokenBucket(self.rate, float(self.rate.burst), now)
        return found

    def _forget_full(self, now: float) -> None:
        for name, bucket in list(self.buckets.items()):
            bucket.refill(now)
            if bucket.full:
                del self.buckets[name]


class Crowded(Exception):
    """Too many requests of one organization are waiting already."""


@dataclass
class Slots:
    """At most `limit` requests of each organization at once, `limit * WAITING_PER_SLOT` more
    waiting their turn."""

    limit: int
    semaphores: dict[str, anyio.Semaphore] = field(default_factory=dict)
    queued: dict[str, int] = field(default_factory=dict)

    async def run(self, organization_id: str, call: Callable[[], Any]) -> None:
        """Run `call` in one of the organization's slots; Crowded when the queue is full."""
        count = self.queued.get(organization_id, 0)
        if count >= self.limit * (1 + WAITING_PER_SLOT):
            raise Crowded(organization_id)
        semaphore = self.semaphores.setdefault(organization_id, anyio.Semaphore(self.limit))
        self.queued[organization_id] = count + 1
        try:
            async with semaphore:
                await call()
        finally:
            self.queued[organization_id] -= 1
            if not self.queued[organization_id]:
                del self.queued[organization_id]
                del self.semaphores[organization_id]


class RateLimiter:
    """The buckets of keys and organizations, and the organizations' slots, of one process."""

    def __init__(
        self,
        key_rate: Rate | None,
        organization_rate: Rate | None,
        organization_concurrency: int,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keys = Buckets(key_rate) if key_rate else None
        self.organizations = Buckets(organization_rate) if organization_rate else None
        self.slots = Slots(organization_concurrency)
        self.monotonic = monotonic

    def take(self, principal: Principal) -> float:
        """Take a token from the key's bucket and one from its organization's; 0 when both
        had one, else the seconds to wait (and nothing is taken)."""
        now = self.monotonic()
        buckets = []
        if self.keys is not None:
            buckets.append(self.keys.bucket(principal.api_key_id, now))
        if self.organizations is not None:
            buckets.append(self.organizations.bucket(principal.organization_id, now))
        wait = max((bucket.wait(now) for bucket in buckets), default=0.0)
        if wait == 0:
            for bucket in buckets:
                bucket.tokens -= 1
        return wait


def guarded(scope: Scope) -> bool:
    path: str = scope.get("path", "")
    return scope["type"] == "http" and (path == "/graphql" or path.startswith(GUARDED_PREFIXES))


class RateLimits:
    """ASGI middleware: authenticate, charge the buckets, run in the organization's slot."""

    def __init__(self, app: ASGIApp, runtime: Runtime, limiter: RateLimiter | None = None) -> None:
        self.app = app
        self.runtime = runtime
        settings = runtime.settings
        self.limiter = limiter or RateLimiter(
            settings.key_rate, settings.organization_rate, settings.organization_concurrency
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not guarded(scope):
            await self.app(scope, receive, send)
            return
        found = await authenticate_request(HTTPConnection(scope), self.runtime)
        scope.setdefault("state", {})[_STATE] = found
        if found is None:
            await self.app(scope, receive, send)
            return
        principal, organization = found
        wait = self.limiter.take(principal)
        if wait > 0:
            await refusal(scope, wait, "too many requests for this key or organization")(
                scope, receive, send
            )
            return
        await self.runtime.authenticator.record_use(principal, self.runtime.clock.now())
        actor = audit.Actor(principal.api_key_id, principal.key_prefix, principal.member_id)

        async def call() -> None:
            with audit.acting(actor):
                await self.app(scope, receive, send)

        try:
            await self.limiter.slots.run(organization.id, call)
        except Crowded:
            message = "too many requests of this organization at once"
            await refusal(scope, 1, message)(scope, receive, send)


def refusal(scope: Scope, wait: float, message: str) -> JSONResponse:
    """429 with `Retry-After` (whole seconds): a GraphQL error on /graphql, else Tally's JSON
    error."""
    seconds = max(1, math.ceil(wait))
    headers = {"Retry-After": str(seconds)}
    text = f"{message}; retry in {seconds} s"
    if scope.get("path") == "/graphql":
        error = rate_limited(text, seconds).formatted
        return JSONResponse({"data": None, "errors": [error]}, status_code=429, headers=headers)
    return error_response(429, "RATE_LIMITED", text, headers)


async def authenticate_request(connection: HTTPConnection, runtime: Runtime) -> Found:
    """The key of the request's `Authorization: Bearer` header and its organization, if live
    (as the process's authenticator knows them: at most TALLY_AUTH_CACHE_SECONDS old)."""
    secret = bearer_secret(connection.headers.get("authorization"))
    return await runtime.authenticator.authenticate(secret)


async def authenticated(connection: HTTPConnection, runtime: Runtime) -> Found:
    """The caller as the middleware authenticated it, or authenticated now when it did not."""
    state = connection.scope.get("state", {})
    if _STATE in state:
        found: Found = state[_STATE]
        return found
    return await authenticate_request(connection, runtime)
