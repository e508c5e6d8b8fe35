"""The plan catalog, read from TOML: the built-in one, or TALLY_PLANS in its place."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from billing.money import Money
from core.resources import load_toml, packaged
from limits import Limit, Policy

BUILTIN_PLANS = packaged("billing", "plans.toml")
UNLIMITED = "unlimited"
DEFAULT_THRESHOLDS = (80, 100)


class CatalogError(ValueError):
    """The plans file is malformed, or a plan that does not exist was asked for."""


@dataclass(frozen=True)
class Plan:
    """A plan: its monthly price (excluding tax) and a limit and policy per resource key."""

    id: str
    name: str
    price_monthly: Money
    limits: Mapping[str, int | None]
    policies: Mapping[str, Policy] = field(default_factory=dict)
    stripe_price: str | None = None
    thresholds: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    overage: Mapping[str, Decimal] = field(default_factory=dict)
    trial_days: int = 0

    def limit(self, resource: str) -> Limit | None:
        """The plan's limit on a resource, or None when the plan does not name it."""
        if resource not in self.limits:
            return None
        return Limit(
            self.limits[resource],
            self.policies.get(resource, Policy.HARD),
            self.thresholds.get(resource, DEFAULT_THRESHOLDS),
        )

    def overage_price(self, resource: str) -> Decimal | None:
        """The price of one unit past the limit, in major units of the plan's currency."""
        return self.overage.get(resource)


class Catalog:
    """The plans on offer, cheapest first."""

    def __init__(self, plans: Iterable[Plan]) -> None:
        ordered = sorted(plans, key=lambda plan: (plan.price_monthly.amount_minor, plan.id))
        self._plans = {plan.id: plan for plan in ordered}
        if not self._plans:
            raise CatalogError("the plans file defines no plan")

    @classmethod
    def load(cls, path: Path | None = None) -> Catalog:
        document = load_toml(path, BUILTIN_PLANS, "plans file", CatalogError)
        source = document.source
        plans = document.data.get("plans")
        if not isinstance(plans, dict):
            raise CatalogError(f"plans file {source} has no [plans.<id>] table")
        return cls(_parse_plan(plan_id, table, source) for plan_id, table in plans.items())

    def __iter__(self) -> Iterator[Plan]:
        return iter(self._plans.values())

    def __len__(self) -> int:
        return len(self._plans)

    def find(self, plan_id: str) -> Plan | None:
        return self._plans.get(plan_id)

    def get(self, plan_id: str) -> Plan:
        plan = self._plans.get(plan_id)
        if plan is None:
            raise CatalogError(f"unknown plan {plan_id!r}; plans: {', '.join(self._plans)}")
        return plan

    def check_resources(self, known: Iterable[str]) -> None:
        """Fail when a plan limits a resource that no plugin registers."""
        known_keys = set(known)
        for plan in self:
            for key in (
                set(plan.limits) | set(plan.policies) | set(plan.thresholds) | set(plan.overage)
            ):
                if key not in known_keys:
                    raise CatalogError(
                        f"plan {plan.id!r} limits {key!r}, but no installed plugin registers "
                        f"that resource; registered: {', '.join(sorted(known_keys))}"
                    )


def _parse_plan(plan_id: str, table: Any, source: str) -> Plan:
    where = f"{source}: plan {plan_id!r}"
    if not isinstance(table, dict):
        raise CatalogError(f"{where} must be a table")
    for required in ("name", "price_monthly", "currency"):
        if not isinstance(table.get(required), str):
            raise CatalogError(f"{where} needs {required} as a string")
    try:
        price = Money.parse(table["price_monthly"], table["currency"])
    except ValueError as error:
        raise CatalogError(f"{where}: {error}") from None
    limits: dict[str, int | None] = {}
    for key, value in (table.get("limits") or {}).items():
        if value == UNLIMITED:
            limits[key] = None
        elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            limits[key] = value
        else:
            raise CatalogError(
                f"{where}: limit {key} must be a non-negative integer or 'unlimited'"
            )
    policies: dict[str, Policy] = {}
    for key, value in (table.get("policies") or {}).items():
        try:
            policies[key] = Policy(value)
        except ValueError:
            raise CatalogError(f"{where}: policy {key} must be hard, soft or overage") from None
    thresholds: dict[str, tuple[int, ...]] = {}
    for key, value in (table.get("thresholds") or {}).items():
        if not isinstance(value, list) or not all(
            isinstance(t, int) and not isinstance(t, bool) and 0 < t <= 1000 for t in value
        ):
            raise CatalogError(f"{where}: thresholds {key} must be a list of percents (1 to 1000)")
        thresholds[key] = tuple(sorted(set(value)))
    stripe_price = table.get("stripe_price")
    if stripe_price is not None and not isinstance(stripe_price, str):
        raise CatalogError(f"{where}: stripe_price must be a string")
    overage = {key: _unit_price(where, key, value) for key, value in _table(table, "overage")}
    trial_days = table.get("trial_days", 0)
    if (
        not isinstance(trial_days, int)
        or isinstance(trial_days, bool)
        or not 0 <= trial_days <= 365
    ):
        raise CatalogError(f"{where}: trial_days must be a whole number of days, 0 to 365")
    return Plan(
        plan_id,
        table["name"],
        price,
        limits,
        policies,
        stripe_price,
        thresholds,
        overage,
        trial_days,
    )


def _table(table: dict[str, Any], name: str) -> list[tuple[str, Any]]:
    return list((table.get(name) or {}).items())


def _unit_price(where: str, key: str, value: Any) -> Decimal:
    message = f'{where}: overage {key} must be a decimal string such as "0.000002"'
    if not isinstance(value, str):
        raise CatalogError(message)
    try:
        price = Decimal(value)
    except InvalidOperation:
        raise CatalogError(message) from None
    if not price.is_finite() or price < 0:
        raise CatalogError(message)
    return price
