"""Provider webhooks: verify the signature, then a table of handlers, one per event type.

Each event id is handled once; the handler and the record of the event commit together.
Handlers lock the rows they change. Two events of the same second cannot be ordered by their
`created`: when the state already applied is of that same second, the object is re-read from
the provider (before the transaction, no lock held) and its current state applied.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from sqlalchemy.ext.asyncio import AsyncSession

from billing import ledger_repository
from billing.catalog import Catalog
from billing.dunning import DEFAULT_GRACE
from core.clock import Clock
from core.db import Database
from core.errors import ErrorCode, InvalidInput, Unavailable

TOLERANCE_SECONDS = 300


@dataclass(frozen=True)
class Handled:
    """What a handler did ("applied", "stale", "unknown_customer") and for which organization."""

    outcome: str
    organization_id: str | None = None


@runtime_checkable
class ObjectSource(Protocol):
    """Where an event's object can be re-read as it stands now (the Stripe provider)."""

    async def retrieve(self, kind: str, object_id: str) -> Mapping[str, Any]:
        """The object `object_id` of type `kind` (an event object's `object` field)."""
        ...


@dataclass(frozen=True)
class EventContext:
    """What handlers need besides the session: the dunning grace a failed payment starts,
    and where to re-read an object (None: events are applied as delivered)."""

    catalog: Catalog
    clock: Clock
    grace: timedelta = DEFAULT_GRACE
    source: ObjectSource | None = None


Handler = Callable[[AsyncSession, Mapping[str, Any], datetime, EventContext], Awaitable[Handled]]
SameSecond = Callable[[AsyncSession, Mapping[str, Any], datetime], Awaitable[bool]]
"""Whether the state already applied for an event's object is of the event's own second."""


def signature_header(payload: bytes, secret: str, timestamp: int) -> str:
    """A `Stripe-Signature` header value for `payload`: `t=<timestamp>,v1=<HMAC-SHA256>`."""
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(payload: bytes, header: str | None, secret: str, now: datetime) -> dict[str, Any]:
    """The event in `payload` once its Stripe signature checks out; InvalidInput
    when the header is missing, malformed, wrong or older than TOLERANCE_SECONDS."""
    if not header:
        raise InvalidInput(ErrorCode.INVALID_SIGNATURE, "the Stripe-Signature header is missing")
    parts = [item.split("=", 1) for item in header.split(",") if "=" in item]
    timestamps = [value for name, value in parts if name.strip() == "t"]
    signatures = [value for name, value in parts if name.strip() == "v1"]
    if len(timestamps) != 1 or not timestamps[0].isdigit() or not signatures:
        raise InvalidInput(ErrorCode.INVALID_SIGNATURE, "the Stripe-Signature header is malformed")
    timestamp = int(timestamps[0])
    expected = signature_header(payload, secret, timestamp).split("v1=", 1)[1]
    if not any(hmac.compare_digest(expected, signature) for signature in signatures):
        raise InvalidInput(ErrorCode.INVALID_SIGNATURE, "the signature does not match the payload")
    if abs(now.timestamp() - timestamp) > TOLERANCE_SECONDS:
        raise InvalidInput(ErrorCode.INVALID_SIGNATURE, "the signature's timestamp is too old")
    try:
        event = json.loads(payload)
    except ValueError:
        raise InvalidInput(ErrorCode.INVALID_PAYLOAD, "the payload is not JSON") from None
    if (
        not isinstance(event, dict)
        or not isinstance(event.get("id"), str)
        or not isinstance(event.get("type"), str)
        or not isinstance(event.get("created"), int)
        or not isinstance(event.get("data"), dict)
        or not isinstance(event["data"].get("object"), dict)
    ):
        raise InvalidInput(ErrorCode.INVALID_PAYLOAD, "the payload is not a Stripe event")
    return event


class Webhooks:
    """Receives a provider's events: verified, dispatched by type, each id once."""

    def __init__(
        self,
        db: Database,
        context: EventContext,
        secret: str | None,
        handlers: Mapping[str, Handler],
        same_second: SameSecond | None = None,
    ) -> None:
        self.db = db
        self.context = context
        self.secret = secret
        self.handlers = handlers
        self.same_second = same_second

    async def handle(self, payload: bytes, header: str | None) -> str:
        """'applied', 'stale', 'ignored', 'duplicate' or 'unknown_customer'."""
        if not self.secret:
            raise Unavailable(
                ErrorCode.WEBHOOKS_NOT_CONFIGURED, "STRIPE_WEBHOOK_SECRET is not set on this server"
            )
        event = verify(payload, header, self.secret, self.context.clock.now())
        created = datetime.fromtimestamp(event["created"], UTC)
        handler = self.handlers.get(event["type"])
        obj = event["data"]["object"]
        if handler is not None:
            obj = await self._current(obj, created)
        async with self.db.write() as session:
            savepoint = await session.begin_nested()
            handled = Handled("ignored")
            if handler is not None:
                handled = await handler(session, obj, created, self.context)
            first = await ledger_repository.record_event(
                session,
                event["id"],
                event["type"],
                handled.organization_id,
                created,
                self.context.clock.now(),
            )
            if not first:
                await savepoint.rollback()
                return "duplicate"
            await savepoint.commit()
        return handled.outcome

    async def _current(self, obj: Mapping[str, Any], created: datetime) -> Mapping[str, Any]:
        """`obj`, or its state re-read from the provider when what was applied already is of
        the same second (so two events of one second settle on the provider's latest)."""
        source, same_second = self.context.source, self.same_second
        if source is None or same_second is None or not isinstance(obj.get("id"), str):
            return obj
        async with self.db.read() as session:
            if not await same_second(session, obj, created):
                return obj
        return await source.retrieve(str(obj.get("object")), str(obj["id"]))
