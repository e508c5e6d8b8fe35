"""Usage as a service: each operation in its own transaction, for every API to call.

The GraphQL mutations and the `/v1` routes call these; a single-event operation raises the
refusal of a rejected decision (`LimitExceeded`, or `InvalidInput` for a give-back below
zero), while batches answer a decision per event.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from core.db import Database
from core.errors import ErrorCode
from core.orgs import Organization
from limits import repository
from limits.engine import LimitEngine
from limits.metrics import count_decisions
from limits.models import UsageAlert
from limits.stats import Granularity, UsageStats, usage_stats
from limits.types import Decision, Reservation, ReserveOutcome, UsageInput, UsageRejected

DEFAULT_TTL_SECONDS = 300


def accepted(decision: Decision) -> Decision:
    """The decision, or its refusal raised."""
    refusal = decision.refusal()
    if refusal is not None:
        raise refusal
    return decision


def attributes_of(value: object) -> dict[str, Any]:
    """Attributes given as JSON: an object, or nothing."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageRejected(ErrorCode.INVALID_ATTRIBUTE, "attributes must be a JSON object")
    return dict(value)


class UsageService:
    """Records, checks and reserves usage, and reads statistics and alerts."""

    def __init__(self, db: Database, engine: LimitEngine) -> None:
        self.db = db
        self.engine = engine

    async def record(
        self, organization: Organization, inputs: Sequence[UsageInput]
    ) -> list[Decision]:
        """A decision per event, in order; all validated (outside any transaction) before any
        is applied, then applied in a transaction of their own."""
        events = self.engine.prepare(organization, inputs)
        decisions = await self.engine.apply_batch(self.db, organization, events)
        count_decisions(decisions)
        return decisions

    async def consume(
        self,
        organization: Organization,
        resource: str,
        amount: int,
        idempotency_key: str,
        attributes: object = None,
    ) -> Decision:
        """One event, all or nothing; its refusal raised."""
        usage = UsageInput(resource, amount, idempotency_key, None, attributes_of(attributes))
        return accepted((await self.record(organization, [usage]))[0])

    async def check(
        self, organization: Organization, inputs: Sequence[UsageInput]
    ) -> list[Decision]:
        """What recording would decide; records nothing."""
        async with self.db.read() as session:
            return await self.engine.check(session, organization, inputs)

    async def reserve(
        self,
        organization: Organization,
        resource: str,
        amount: int,
        *,
        ttl_seconds: int | None,
        idempotency_key: str,
    ) -> ReserveOutcome:
        """A reservation, or the refused decision that kept it from being made (a single
        operation's caller raises `accepted(outcome.decision)`'s refusal)."""
        ttl = timedelta(seconds=DEFAULT_TTL_SECONDS if ttl_seconds is None else ttl_seconds)
        async with self.db.write() as session:
            return await self.engine.reserve(
                session, organization, resource, amount, ttl=ttl, idempotency_key=idempotency_key
            )

    async def commit(
        self,
        organization: Organization,
        reservation_id: str,
        amount: int,
        attributes: object = None,
    ) -> Decision:
        """A reservation turned into usage of `amount`."""
        async with self.db.write() as session:
            decision = await self.engine.commit(
                session, organization, reservation_id, amount, attributes_of(attributes)
            )
        count_decisions([decision])
        return decision

    async def release(self, organization: Organization, reservation_id: str) -> Reservation:
        """A reservation given back."""
        async with self.db.write() as session:
            return await self.engine.release(session, organization, reservation_id)

    async def statistics(
        self,
        organization: Organization,
        *,
        resource: str,
        start: datetime,
        end: datetime,
        granularity: Granularity,
        timezone: str,
    ) -> UsageStats:
        """Usage and cost over time and by attribute, from the rollups."""
        async with self.db.read() as session:
            return await usage_stats(
                session,
                organization,
                resource=resource,
                start=start,
                end=end,
                granularity=granularity,
                timezone=timezone,
                currency=self.engine.prices.currency,
            )

    async def alerts(self, organization: Organization) -> Sequence[UsageAlert]:
        """Thresholds crossed this period (by gauges too), newest first."""
        period = self.engine.period(organization)
        async with self.db.read() as session:
            return await repository.list_alerts(session, organization.id, period.start)
