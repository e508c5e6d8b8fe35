"""The limit engine: check, consume and read usage, exactly. No SQL here."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import pluggy
from sqlalchemy.ext.asyncio import AsyncSession

from limits import repository
from limits.display import format_meter
from limits.manager import ResourceRegistry
from limits.periods import GAUGE_EPOCH, Period, period_containing
from limits.resource import Limit, Policy, Resource
from tally.clock import Clock
from tally.db import on_commit
from tally.orgs import Organization
from tally.orgs.models import new_id

log = logging.getLogger(__name__)

Status = Literal["accepted", "duplicate", "rejected"]


class UsageRejected(ValueError):
    """Bad usage input, refused before anything is written."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class UsageEvent:
    """One unit of usage as recorded: what, how much, when, and its attributes."""

    organization_id: str
    resource: str
    amount: int
    idempotency_key: str
    occurred_at: datetime
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """The answer to "may I?": the status, and the counter as the decision left it."""

    resource: str
    status: Status
    requested: int
    used: int
    limit: int | None
    policy: Policy

    @property
    def allowed(self) -> bool:
        return self.status != "rejected"

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(self.limit - self.used, 0)

    @property
    def over_limit(self) -> bool:
        return self.limit is not None and self.used > self.limit


@dataclass(frozen=True)
class ResourceUsage:
    """One meter: a resource's usage against its limit."""

    resource: Resource
    used: int
    limit: Limit

    @property
    def remaining(self) -> int | None:
        return None if self.limit.value is None else max(self.limit.value - self.used, 0)

    @property
    def percent(self) -> float:
        if self.limit.value is None:
            return 0.0
        if self.limit.value == 0:
            return 100.0 if self.used > 0 else 0.0
        return round(self.used * 100 / self.limit.value, 2)

    @property
    def display(self) -> str:
        return format_meter(self.used, self.limit.value, self.resource.display)


@dataclass(frozen=True)
class UsageSnapshot:
    """Every meter of an organization in its current billing period."""

    period: Period
    resources: tuple[ResourceUsage, ...]

    @property
    def percent_used(self) -> float:
        """The highest percent among limited resources: a full meter is never hidden."""
        limited = [meter.percent for meter in self.resources if meter.limit.value is not None]
        return max(limited, default=0.0)

    def get(self, key: str) -> ResourceUsage:
        for meter in self.resources:
            if meter.resource.key == key:
                return meter
        raise KeyError(key)


class LimitEngine:
    """Exact limits over the resources that plugins register.

    Every operation takes the caller's session; writes happen in the caller's transaction,
    and `tally_usage_recorded` observers run after it commits.
    """

    def __init__(self, plugins: pluggy.PluginManager, clock: Clock) -> None:
        self.plugins = plugins
        self.clock = clock
        self.registry = ResourceRegistry(plugins)

    def resource(self, key: str) -> Resource:
        resource = self.registry.get(key)
        if resource is None:
            known = ", ".join(sorted(r.key for r in self.registry))
            raise UsageRejected("UNKNOWN_RESOURCE", f"unknown resource {key!r}; known: {known}")
        return resource

    def limit(self, organization: Organization, resource: Resource) -> Limit:
        limit: Limit | None = self.plugins.hook.tally_resolve_limit(
            organization=organization, resource=resource
        )
        return limit if limit is not None else Limit(resource.default_limit)

    def period(self, organization: Organization, at: datetime | None = None) -> Period:
        """The organization's billing period holding `at` (default: now)."""
        return period_containing(at or self.clock.now(), organization.billing_anchor_day)

    def _counter_period(self, organization: Organization, resource: Resource) -> datetime:
        return self.period(organization).start if resource.resets else GAUGE_EPOCH

    async def usage(
        self, session: AsyncSession, organization: Organization, at: datetime | None = None
    ) -> UsageSnapshot:
        """Every resource's meter in the period holding `at` (default: now), from one read of
        the counters. Gauges show their current count whatever the period."""
        period = self.period(organization, at)
        counters = await repository.counters(session, organization.id, [period.start, GAUGE_EPOCH])
        meters = []
        for resource in self.registry:
            start = period.start if resource.resets else GAUGE_EPOCH
            used = await self._own_usage(session, organization, resource, period)
            if used is None:
                used = counters.get((resource.key, start), 0)
            meters.append(ResourceUsage(resource, used, self.limit(organization, resource)))
        return UsageSnapshot(period, tuple(meters))

    async def _own_usage(
        self, session: AsyncSession, organization: Organization, resource: Resource, period: Period
    ) -> int | None:
        answer = self.plugins.hook.tally_current_usage(
            session=session,
            organization=organization,
            resource=resource,
            period=period if resource.resets else None,
        )
        if inspect.isawaitable(answer):
            answer = await answer
        return None if answer is None else int(answer)

    async def current(
        self, session: AsyncSession, organization: Organization, resource: Resource
    ) -> int:
        period = self.period(organization)
        own = await self._own_usage(session, organization, resource, period)
        if own is not None:
            return own
        start = period.start if resource.resets else GAUGE_EPOCH
        return await repository.counter_value(session, organization.id, resource.key, start)

    def validate(
        self,
        organization: Organization,
        key: str,
        amount: int,
        attributes: Mapping[str, Any] | None = None,
    ) -> Resource:
        """The resource, once the amount and attributes are acceptable; else UsageRejected."""
        resource = self.resource(key)
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise UsageRejected("INVALID_AMOUNT", f"amount must be an integer, not {amount!r}")
        if amount < 0 and resource.kind == "metered":
            raise UsageRejected(
                "INVALID_AMOUNT", f"{key} is metered: its amount cannot be negative ({amount})"
            )
        attributes = attributes or {}
        unknown = sorted(set(attributes) - set(resource.attributes))
        if unknown:
            allowed = ", ".join(resource.attributes) or "none"
            raise UsageRejected(
                "INVALID_ATTRIBUTE",
                f"{key} does not take attribute(s) {', '.join(unknown)}; it takes: {allowed}",
            )
        self.plugins.hook.tally_validate_usage(
            organization=organization, resource=resource, amount=amount, attributes=attributes
        )
        return resource

    async def check(
        self,
        session: AsyncSession,
        organization: Organization,
        key: str,
        amount: int,
        attributes: Mapping[str, Any] | None = None,
    ) -> Decision:
        """What `consume` would decide now; records nothing."""
        resource = self.validate(organization, key, amount, attributes)
        limit = self.limit(organization, resource)
        used = await self.current(session, organization, resource)
        ceiling = limit.ceiling()
        refused = (amount > 0 and ceiling is not None and used + amount > ceiling) or (
            used + amount < 0
        )
        status: Status = "rejected" if refused else "accepted"
        return Decision(
            key, status, amount, used if refused else used + amount, limit.value, limit.policy
        )

    async def consume(
        self,
        session: AsyncSession,
        organization: Organization,
        key: str,
        amount: int,
        *,
        idempotency_key: str,
        attributes: Mapping[str, Any] | None = None,
    ) -> Decision:
        """Record usage if the limit allows, all or nothing, once per idempotency key.

        A gauge takes a negative amount to give back; it never falls below zero.
        """
        resource = self.validate(organization, key, amount, attributes)
        if not idempotency_key:
            raise UsageRejected("MISSING_IDEMPOTENCY_KEY", "an idempotency key is required")
        limit = self.limit(organization, resource)
        now = self.clock.now()
        start = self._counter_period(organization, resource)
        event = UsageEvent(
            organization.id, key, amount, idempotency_key, now, dict(attributes or {})
        )
        savepoint = await session.begin_nested()
        used = await repository.add_to_counter(
            session, organization.id, key, start, amount, limit.ceiling()
        )
        if used is None:
            await savepoint.rollback()
            if await repository.find_event(session, organization.id, idempotency_key):
                return await self._replay(session, organization.id, idempotency_key, limit)
            current = await repository.counter_value(session, organization.id, key, start)
            return Decision(key, "rejected", amount, current, limit.value, limit.policy)
        inserted = await repository.insert_event(
            session,
            {
                "id": new_id(),
                "organization_id": organization.id,
                "resource": key,
                "idempotency_key": idempotency_key,
                "amount": amount,
                "period_start": start,
                "occurred_at": now,
                "recorded_at": now,
                "used_after": used,
                "limit_value": limit.value,
                "attributes": event.attributes,
            },
        )
        if not inserted:
            await savepoint.rollback()
            return await self._replay(session, organization.id, idempotency_key, limit)
        await savepoint.commit()
        on_commit(session, lambda: self._recorded(organization, resource, event))
        return Decision(key, "accepted", amount, used, limit.value, limit.policy)

    async def _replay(
        self, session: AsyncSession, organization_id: str, idempotency_key: str, limit: Limit
    ) -> Decision:
        original = await repository.find_event(session, organization_id, idempotency_key)
        if original is None:
            raise RuntimeError(f"usage event {idempotency_key!r} vanished during a replay")
        return Decision(
            original.resource,
            "duplicate",
            original.amount,
            original.used_after,
            original.limit_value,
            limit.policy,
        )

    def _recorded(self, organization: Organization, resource: Resource, event: UsageEvent) -> None:
        try:
            self.plugins.hook.tally_usage_recorded(
                organization=organization, resource=resource, events=[event]
            )
        except Exception:
            log.exception("a tally_usage_recorded observer failed for %s", resource.key)
