"""The live meters: the `usageChanged` subscription over graphql-transport-ws on /graphql.

A connection authenticates once, from its `connection_init` payload
(`{"Authorization": "Bearer <key>"}`, the same keys as HTTP), and its key is checked again
every `KEY_RECHECK_SECONDS` (one query per key and interval in a process, however many
connections share it): a revoked key's connection is closed with code 4403.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any

import strawberry
from starlette.websockets import WebSocket, WebSocketState
from strawberry.exceptions import ConnectionRejectionError
from strawberry.permission import PermissionExtension

from core.auth import authenticate, bearer_secret
from core.db import Database
from core.errors import ErrorCode, InvalidInput, NotFound
from graph.context import TallyContext
from graph.permissions import AnyMember, Info, caller, own_organization_id
from limits.models import UsageAlert
from limits.notify import UsageHub

KEY_RECHECK_SECONDS = 2.0
REVOKED_CLOSE_CODE = 4403


class KeyWatch:
    """Whether API keys still authenticate, asked at most once per `interval` per key."""

    def __init__(self, db: Database, interval: float = KEY_RECHECK_SECONDS) -> None:
        self.db = db
        self.interval = interval
        self._checked: dict[str, tuple[float, bool]] = {}
        self._lock = asyncio.Lock()

    async def valid(self, secret: str) -> bool:
        """True while the key authenticates (not revoked, not unknown)."""
        async with self._lock:
            now = time.monotonic()
            checked = self._checked.get(secret)
            if checked is not None and now - checked[0] < self.interval:
                return checked[1]
            async with self.db.read() as session:
                live = await authenticate(session, secret) is not None
            stale = [key for key, (at, _) in self._checked.items() if now - at > 10 * self.interval]
            for key in stale:
                del self._checked[key]
            self._checked[secret] = (now, live)
            return live


@dataclass
class LiveContext(TallyContext):
    """The context of a websocket connection: its `connection_init` payload, the key it
    authenticated with, and the process's hub and key watch."""

    hub: UsageHub | None = None
    keys: KeyWatch | None = None
    connection_params: dict[str, object] | None = None
    secret: str | None = None
    watcher: asyncio.Task[None] | None = field(default=None, repr=False)


def _authorization(params: Mapping[str, object] | None) -> str | None:
    for name, value in (params or {}).items():
        if name.lower() == "authorization" and isinstance(value, str):
            return value
    return None


async def authenticate_connection(context: LiveContext) -> None:
    """Authenticate the connection from its `connection_init` payload (refused with 4403
    otherwise), then watch its key until the connection ends."""
    secret = bearer_secret(_authorization(context.connection_params))
    async with context.services.db.read() as session:
        principal = await authenticate(session, secret)
    if principal is None or secret is None:
        raise ConnectionRejectionError({"message": "a valid API key is required"})
    context.principal, context.secret = principal, secret
    connection: object = context.request
    if context.keys is not None and isinstance(connection, WebSocket):
        context.watcher = asyncio.create_task(_watch(context.keys, secret, connection))


async def _watch(keys: KeyWatch, secret: str, websocket: WebSocket) -> None:
    while websocket.application_state == WebSocketState.CONNECTED:
        await asyncio.sleep(keys.interval)
        if websocket.application_state != WebSocketState.CONNECTED:
            return
        if not await keys.valid(secret):
            with contextlib.suppress(RuntimeError):
                await websocket.close(code=REVOKED_CLOSE_CODE, reason="API key revoked")
            return


@strawberry.type(description="A usage threshold crossed, as pushed to live subscribers.")
class ThresholdCrossed:
    resource: str
    threshold: int = strawberry.field(
        description="Percent of the limit (kind LIMIT) or of the spend cap (kind SPEND_CAP)."
    )
    kind: str
    crossed_at: dt.datetime

    @classmethod
    def of(cls, alert: UsageAlert) -> ThresholdCrossed:
        return cls(
            resource=alert.resource,
            threshold=alert.threshold,
            kind=alert.kind.upper(),
            crossed_at=alert.crossed_at,
        )


def _alert_key(alert: UsageAlert) -> tuple[str, dt.datetime, str, int]:
    return (alert.resource, alert.period_start, alert.kind, alert.threshold)


def build_subscription(usage_type: type) -> type:
    """The root Subscription, its `UsageChanged` around the plugin-made `usage_type`."""
    changed_type = strawberry.type(
        type(
            "UsageChanged",
            (),
            {
                "__annotations__": {
                    "usage": usage_type,
                    "thresholds_crossed": list[ThresholdCrossed],
                },
                "usage": strawberry.field(
                    description="The same type as Organization.usage: every meter, "
                    "percentUsed, period."
                ),
                "thresholds_crossed": strawberry.field(
                    description="Thresholds crossed since the previous update sent on this "
                    "connection (empty if none)."
                ),
            },
        ),
        description="An organization's usage after a committed change.",
    )

    async def usage_changed(
        info: Info, organization_id: strawberry.ID | None = None
    ) -> AsyncGenerator[Any, None]:
        organization = own_organization_id(caller(info), organization_id)
        if organization is None:
            raise NotFound.of("organization")
        hub = getattr(info.context, "hub", None)
        if not isinstance(hub, UsageHub):
            raise InvalidInput(
                ErrorCode.INVALID_INPUT, "usageChanged needs a graphql-transport-ws connection"
            )
        known: set[tuple[str, dt.datetime, str, int]] | None = None
        async for reading in hub.subscribe(organization):
            if reading is None:
                return
            crossed = (
                [] if known is None else [a for a in reading.alerts if _alert_key(a) not in known]
            )
            known = {_alert_key(alert) for alert in reading.alerts}
            crossed.sort(key=lambda alert: (alert.crossed_at, alert.threshold))
            yield changed_type(
                usage=reading.usage,
                thresholds_crossed=[ThresholdCrossed.of(alert) for alert in crossed],
            )

    usage_changed.__annotations__["return"] = AsyncGenerator[changed_type, None]  # type: ignore[valid-type]
    subscription = strawberry.subscription(
        resolver=usage_changed,
        description="The organization's usage now, then after each committed change and each "
        "threshold crossed (coalesced per connection: at most 4 updates a second, the latest "
        "state always last). The connection authenticates with its `connection_init` payload "
        '{"Authorization": "Bearer <key>"}; a revoked key\'s connections are closed. '
        f"{AnyMember.requirement()}",
        extensions=[PermissionExtension(permissions=[AnyMember()], use_directives=False)],
    )
    return strawberry.type(type("Subscription", (), {"usage_changed": subscription}))
