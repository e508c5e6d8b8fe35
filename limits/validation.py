"""Turning reported usage into prepared events: validated, placed in a period, costed.

Nothing is written here; a batch is prepared whole before any of it is applied, in one pass:
each event's resource, amount, key, time and attribute names are checked and its period and
cost worked out in a plain loop, then each resource's events are handed to one
`tally_validate_batch` call (the built-in resources check theirs there, in a loop). The
per-event `tally_validate_usage` hook is called only when a plugin implements it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pluggy

from core.errors import ErrorCode
from core.orgs import Organization
from limits.manager import ResourceRegistry
from limits.periods import GAUGE_EPOCH, Period, period_containing
from limits.pricing import ModelPrice, PriceTable
from limits.resource import Resource
from limits.types import BIGINT_MAX, PreparedEvent, UsageInput, UsageRejected

FUTURE_TOLERANCE = timedelta(seconds=60)
MAX_KEY_LENGTH = 200
MAX_AMOUNT = 2**62

Refusal = tuple[int, UsageRejected]
"""A refused event: its index in the batch and why."""


@dataclass(frozen=True, slots=True)
class _ResourceRules:
    """What the per-event checks need of a resource, worked out once."""

    resource: Resource
    attributes: frozenset[str]
    metered: bool


class Preparer:
    """Validates usage against the registered resources and the plugins' own checks."""

    def __init__(
        self,
        registry: ResourceRegistry,
        plugins: pluggy.PluginManager,
        prices: PriceTable,
        grace: timedelta,
    ) -> None:
        self.plugins = plugins
        self.prices = prices
        self.grace = grace
        self._rules = {
            resource.key: _ResourceRules(resource, frozenset(resource.attributes), resource.resets)
            for resource in registry
        }
        self._validates_each_event = bool(plugins.hook.tally_validate_usage.get_hookimpls())

    def resource(self, key: object) -> Resource:
        rules = self._rules.get(key) if isinstance(key, str) else None
        if rules is None:
            raise self._unknown_resource(key)
        return rules.resource

    def _unknown_resource(self, key: object) -> UsageRejected:
        known = ", ".join(self._rules)
        return UsageRejected(
            ErrorCode.UNKNOWN_RESOURCE, f"unknown resource {key!r}; known: {known}"
        )

    def counter_period(
        self,
        organization: Organization,
        metered: bool,
        at: datetime,
        now: datetime,
        current: Period,
    ) -> datetime:
        """The counter an event occurring at `at` counts in: a gauge's only one; for a metered
        resource its own period when that is current (`current`, the period at `now`) or ended
        less than the grace window ago, else the current period."""
        if not metered:
            return GAUGE_EPOCH
        if at >= current.start:
            return current.start
        own = period_containing(at, organization.billing_anchor_day)
        if now - own.end <= self.grace:
            return own.start
        return period_containing(now, organization.billing_anchor_day).start

    def prepare(
        self,
        organization: Organization,
        batch: Sequence[UsageInput],
        now: datetime,
        current: Period,
    ) -> list[PreparedEvent]:
        """The batch validated whole, each event placed in its period and costed, in order.

        `current` is the organization's period at `now`. The first bad event (the lowest
        index) is refused with `UsageRejected`, naming it (`events[3]: ...`) when the batch
        holds more than one.
        """
        prepared: list[PreparedEvent] = []
        refusal: Refusal | None = None
        prices: dict[str, ModelPrice | None] = {}
        for index, usage in enumerate(batch):
            try:
                prepared.append(self._prepare_one(organization, usage, now, current, prices))
            except UsageRejected as error:
                refusal = (index, error)
                break
        refusal = self._validate_by_resource(organization, prepared, refusal)
        if refusal is not None:
            index, refused = refusal
            raise (refused.at(index) if len(batch) > 1 else refused) from None
        return prepared

    def _prepare_one(
        self,
        organization: Organization,
        usage: UsageInput,
        now: datetime,
        current: Period,
        prices: dict[str, ModelPrice | None],
    ) -> PreparedEvent:
        """One event checked on its own (resource, amount, key, time, attribute names), placed
        in its period and costed; `prices` keeps each model's price for the rest of the batch."""
        rules = self._rules.get(usage.resource) if isinstance(usage.resource, str) else None
        if rules is None:
            raise self._unknown_resource(usage.resource)
        resource = rules.resource
        amount = usage.amount
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise UsageRejected(
                ErrorCode.INVALID_AMOUNT, f"amount must be an integer, not {amount!r}"
            )
        if abs(amount) > MAX_AMOUNT:
            raise UsageRejected(ErrorCode.INVALID_AMOUNT, f"amount must be at most {MAX_AMOUNT}")
        if amount < 0 and rules.metered:
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
        if not attributes.keys() <= rules.attributes:
            raise _unknown_attributes(resource, attributes)
        model = _text(attributes.get("model"))
        if model is None:
            price = None
        elif model in prices:
            price = prices[model]
        else:
            price = prices[model] = self.prices.price(model)
        event = PreparedEvent(
            resource=resource,
            amount=amount,
            idempotency_key=key,
            occurred_at=occurred_at,
            period_start=self.counter_period(
                organization, rules.metered, occurred_at, now, current
            ),
            attributes=attributes,
            model=model,
            action=_text(attributes.get("action")),
            cost_micros=None
            if price is None
            else price.cost_micros(
                amount,
                _count(attributes.get("input_tokens")),
                _count(attributes.get("output_tokens")),
            ),
        )
        if event.cost_micros is not None and event.cost_micros > BIGINT_MAX:
            raise UsageRejected(
                ErrorCode.AMOUNT_TOO_LARGE,
                f"{amount} tokens of {model} would cost {event.cost_micros} millionths, past "
                f"{BIGINT_MAX}, the largest cost Tally keeps",
            )
        return event

    def _validate_by_resource(
        self,
        organization: Organization,
        prepared: Sequence[PreparedEvent],
        refusal: Refusal | None,
    ) -> Refusal | None:
        """The plugins' checks: each resource's events (all before `refusal`, the event refused
        on its own) in one `tally_validate_batch` call, then one by one through
        `tally_validate_usage` when a plugin implements it. The refusal of the lowest index
        wins, as if the events had been checked one after the other."""
        groups: dict[str, list[int]] = {}
        for index, event in enumerate(prepared):
            groups.setdefault(event.resource.key, []).append(index)
        for indexes in groups.values():
            events = [prepared[index] for index in indexes]
            resource = events[0].resource
            try:
                self.plugins.hook.tally_validate_batch(
                    organization=organization, resource=resource, events=events
                )
            except UsageRejected as error:
                position = error.index or 0
                position = position if 0 <= position < len(indexes) else 0
                if refusal is None or indexes[position] < refusal[0]:
                    refusal = (indexes[position], error)
            if self._validates_each_event:
                refusal = self._validate_each(organization, resource, events, indexes, refusal)
        return refusal

    def _validate_each(
        self,
        organization: Organization,
        resource: Resource,
        events: Sequence[PreparedEvent],
        indexes: Sequence[int],
        refusal: Refusal | None,
    ) -> Refusal | None:
        """`tally_validate_usage` for each of one resource's events before `refusal`."""
        for index, event in zip(indexes, events, strict=True):
            if refusal is not None and index >= refusal[0]:
                break
            try:
                self.plugins.hook.tally_validate_usage(
                    organization=organization,
                    resource=resource,
                    amount=event.amount,
                    attributes=event.attributes,
                )
            except UsageRejected as error:
                return index, error
        return refusal


def _unknown_attributes(resource: Resource, attributes: dict[str, Any]) -> UsageRejected:
    unknown = sorted(set(attributes) - set(resource.attributes))
    allowed = ", ".join(resource.attributes) or "none"
    return UsageRejected(
        ErrorCode.INVALID_ATTRIBUTE,
        f"{resource.key} does not take attribute(s) {', '.join(unknown)}; it takes: {allowed}",
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _count(value: Any) -> int | None:
    """A token count for pricing: an integer, else None (the resource's own checks refuse a
    count that is not one)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None
