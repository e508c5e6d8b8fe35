"""Turning reported usage into prepared events: validated, placed in a period, costed.

Nothing is written here; a batch is prepared whole before any of it is applied.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pluggy

from core.errors import ErrorCode
from core.orgs import Organization
from limits.manager import ResourceRegistry
from limits.periods import GAUGE_EPOCH, Period, period_containing
from limits.pricing import PriceTable
from limits.resource import Resource
from limits.types import PreparedEvent, UsageInput, UsageRejected

FUTURE_TOLERANCE = timedelta(seconds=60)
MAX_KEY_LENGTH = 200
MAX_AMOUNT = 2**62


class Preparer:
    """Validates usage against the registered resources and the plugins' own checks."""

    def __init__(
        self,
        registry: ResourceRegistry,
        plugins: pluggy.PluginManager,
        prices: PriceTable,
        grace: timedelta,
    ) -> None:
        self.registry = registry
        self.plugins = plugins
        self.prices = prices
        self.grace = grace

    def resource(self, key: object) -> Resource:
        resource = self.registry.get(key) if isinstance(key, str) else None
        if resource is None:
            known = ", ".join(r.key for r in self.registry)
            raise UsageRejected(
                ErrorCode.UNKNOWN_RESOURCE, f"unknown resource {key!r}; known: {known}"
            )
        return resource

    def counter_period(
        self,
        organization: Organization,
        resource: Resource,
        at: datetime,
        now: datetime,
        current: Period | None = None,
    ) -> datetime:
        """The counter an event occurring at `at` counts in: its own period when that is
        current or ended less than the grace window ago, else the current period."""
        if not resource.resets:
            return GAUGE_EPOCH
        if current is not None and at >= current.start:
            return current.start
        own = period_containing(at, organization.billing_anchor_day)
        if now - own.end <= self.grace:
            return own.start
        return period_containing(now, organization.billing_anchor_day).start

    def prepare(
        self,
        organization: Organization,
        usage: UsageInput,
        now: datetime,
        current: Period | None = None,
    ) -> PreparedEvent:
        """A validated event; `current` (the organization's period at `now`) spares
        computing the period of each on-time event of a batch."""
        resource = self.resource(usage.resource)
        amount = usage.amount
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise UsageRejected(
                ErrorCode.INVALID_AMOUNT, f"amount must be an integer, not {amount!r}"
            )
        if abs(amount) > MAX_AMOUNT:
            raise UsageRejected(ErrorCode.INVALID_AMOUNT, f"amount must be at most {MAX_AMOUNT}")
        if amount < 0 and resource.kind == "metered":
            raise UsageRejected(
                ErrorCode.INVALID_AMOUNT,
                f"{resource.key} is metered: its amount cannot be negative ({amount})",
            )
        key = usage.idempotency_key
        if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY_LENGTH:
            raise UsageRejected(
                ErrorCode.MISSING_IDEMPOTENCY_KEY,
                f"idempotency_key must be a non-empty string of at most {MAX_KEY_LENGTH} chars",
            )
        occurred_at = usage.occurred_at or now
        if occurred_at.tzinfo is None:
            raise UsageRejected(
                ErrorCode.INVALID_TIMESTAMP, "occurred_at needs a timezone (e.g. Z)"
            )
        if occurred_at > now + FUTURE_TOLERANCE:
            raise UsageRejected(
                ErrorCode.INVALID_TIMESTAMP,
                f"occurred_at {occurred_at.isoformat()} is in the future",
            )
        attributes = dict(usage.attributes)
        self.check_attributes(organization, resource, amount, attributes)
        model = _text(attributes.get("model"))
        return PreparedEvent(
            resource=resource,
            amount=amount,
            idempotency_key=key,
            occurred_at=occurred_at,
            period_start=self.counter_period(organization, resource, occurred_at, now, current),
            attributes=attributes,
            model=model,
            action=_text(attributes.get("action")),
            cost_micros=self.prices.cost_micros(
                model, amount, attributes.get("input_tokens"), attributes.get("output_tokens")
            ),
        )

    def check_attributes(
        self,
        organization: Organization,
        resource: Resource,
        amount: int,
        attributes: dict[str, Any],
    ) -> None:
        unknown = sorted(set(attributes) - set(resource.attributes))
        if unknown:
            allowed = ", ".join(resource.attributes) or "none"
            raise UsageRejected(
                ErrorCode.INVALID_ATTRIBUTE,
                f"{resource.key} does not take attribute(s) {', '.join(unknown)}; "
                f"it takes: {allowed}",
            )
        self.plugins.hook.tally_validate_usage(
            organization=organization, resource=resource, amount=amount, attributes=attributes
        )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
