"""The plan catalog, read from TOML: the built-in one, or TALLY_PLANS in its place."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from billing.money import Money
from core.errors import ErrorCode, InvalidInput
from core.resources import load_toml, packaged
from limits import Limit, Policy

BUILTIN_PLANS = packaged("billing", "plans.toml")
UNLIMITED = "unlimited"
DEFAULT_THRESHOLDS = (80, 100)


class CatalogError(ValueError):
    """The plans file is malformed, or a plan that does not exist was asked for."""


class CurrencyNotOffered(InvalidInput):
    """A plan has no price in the currency asked for."""

    def __init__(self, plan: Plan, currency: str) -> None:
        super().__init__(
            ErrorCode.CURRENCY_NOT_OFFERED,
            f"plan {plan.id!r} is not offered in {currency}; "
            f"it is offered in {', '.join(plan.currencies)}",
            field="currency",
        )


@dataclass(frozen=True)
class Plan:
    """A plan: its monthly prices (excluding tax), one per currency it is offered in, the first
    its default; a limit and policy per resource key; overage unit prices per resource and
    currency."""

    id: str
    name: str
    prices: Mapping[str, Money]
    limits: Mapping[str, int | None]
    policies: Mapping[str, Policy] = field(default_factory=dict)
    stripe_price: str | None = None
    thresholds: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    overage: Mapping[str, Mapping[str, Decimal]] = field(default_factory=dict)
    trial_days: int = 0

    def __post_init__(self) -> None:
        if not self.prices:
            raise ValueError(f"plan {self.id!r} needs a price in at least one currency")

    @property
    def currencies(self) -> tuple[str, ...]:
        """The currencies the plan is offered in, its default first."""
        return tuple(self.prices)

    @property
    def currency(self) -> str:
        """The plan's default currency: the first one its price lists."""
        return self.currencies[0]

    @property
    def price_monthly(self) -> Money:
        """The monthly price in the plan's default currency (the catalog sorts by it)."""
        return self.prices[self.currency]

    def offers(self, currency: str) -> bool:
        """True when the plan has a price in `currency`."""
        return currency in self.prices

    def price(self, currency: str) -> Money:
        """The monthly price in `currency`; CurrencyNotOffered (CURRENCY_NOT_OFFERED) when the
        plan has none, naming the currencies it is offered in."""
        money = self.prices.get(currency)
        if money is None:
            raise CurrencyNotOffered(self, currency)
        return money

    def limit(self, resource: str) -> Limit | None:
        """The plan's limit on a resource, or None when the plan does not name it."""
        if resource not in self.limits:
            return None
        return Limit(
            self.limits[resource],
            self.policies.get(resource, Policy.HARD),
            self.thresholds.get(resource, DEFAULT_THRESHOLDS),
        )

    def overage_price(self, resource: str, currency: str | None = None) -> Decimal | None:
        """The price of one unit past the limit, in major units of `currency` (the plan's
        default when None); None when the plan prices no overage for the resource.
        CurrencyNotOffered when the plan is not offered in `currency`."""
        prices = self.overage.get(resource)
        if prices is None:
            return None
        chosen = self.currency if currency is None else currency
        if chosen not in prices:
            raise CurrencyNotOffered(self, chosen)
        return prices[chosen]


class Catalog:
    """The plans on offer, cheapest first."""

    def __init__(self, plans: Iterable[Plan], topups: Iterable[TopUp] = ()) -> None:
        ordered = sorted(plans, key=lambda plan: (plan.price_monthly.amount_minor, plan.id))
        self._plans = {plan.id: plan for plan in ordered}
        if not self._plans:
            raise CatalogError("the plans file defines no plan")
        self.topups: Mapping[str, TopUp] = {topup.id: topup for topup in topups}
        """The top-up packs on sale, by id, in the plans file's order."""

    @classmethod
    def load(cls, path: Path | None = None) -> Catalog:
        document = load_toml(path, BUILTIN_PLANS, "plans file", CatalogError)
        source = document.source
        plans = document.data.get("plans")
        if not isinstance(plans, dict):
            raise CatalogError(f"plans file {source} has no [plans.<id>] table")
        topups = document.data.get("topups") or {}
        if not isinstance(topups, dict):
            raise CatalogError(f"plans file {source}: topups must be [topups.<id>] tables")
        return cls(
            (_parse_plan(plan_id, table, source) for plan_id, table in plans.items()),
            (_parse_topup(topup_id, table, source) for topup_id, table in topups.items()),
        )

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
        for topup in self.topups.values():
            if topup.resource not in known_keys:
                raise CatalogError(
                    f"top-up {topup.id!r} adds {topup.resource!r}, but no installed plugin "
                    f"registers that resource; registered: {', '.join(sorted(known_keys))}"
                )


def _parse_plan(plan_id: str, table: Any, source: str) -> Plan:
    where = f"{source}: plan {plan_id!r}"
    if not isinstance(table, dict):
        raise CatalogError(f"{where} must be a table")
    if not isinstance(table.get("name"), str):
        raise CatalogError(f"{where} needs name as a string")
    prices = _prices(where, table.get("price_monthly"), table.get("currency"))
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
    overage = {
        key: _overage_prices(where, key, value, tuple(prices))
        for key, value in _table(table, "overage")
    }
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
        prices,
        limits,
        policies,
        stripe_price,
        thresholds,
        overage,
        trial_days,
    )


def _table(table: dict[str, Any], name: str) -> list[tuple[str, Any]]:
    return list((table.get(name) or {}).items())


def _prices(where: str, value: Any, currency: Any) -> dict[str, Money]:
    """`price_monthly = "49.00"` with `currency = "EUR"`, or a table
    `price_monthly = { EUR = "49.00", USD = "55.00" }` (its first currency the default, unless
    `currency` names another of its currencies)."""
    if currency is not None and not isinstance(currency, str):
        raise CatalogError(f"{where} needs currency as a string")
    if isinstance(value, str):
        if currency is None:
            raise CatalogError(f"{where} needs currency as a string")
        amounts = {currency: value}
    elif isinstance(value, dict) and value:
        amounts = dict(value)
        if currency is not None:
            if currency not in amounts:
                raise CatalogError(
                    f"{where}: currency {currency} is not one of price_monthly's currencies"
                )
            amounts = {currency: amounts.pop(currency), **amounts}
    else:
        raise CatalogError(
            f'{where} needs price_monthly as a string ("49.00", with currency) '
            'or a table per currency ({ EUR = "49.00", USD = "55.00" })'
        )
    prices: dict[str, Money] = {}
    for code, amount in amounts.items():
        if not isinstance(amount, str):
            raise CatalogError(f'{where}: price_monthly {code} must be a string such as "49.00"')
        try:
            money = Money.parse(amount, code)
        except ValueError as error:
            raise CatalogError(f"{where}: {error}") from None
        if money.amount_minor < 0:
            raise CatalogError(f"{where}: price_monthly {code} must not be negative")
        prices[code] = money
    return prices


def _overage_prices(
    where: str, key: str, value: Any, currencies: tuple[str, ...]
) -> dict[str, Decimal]:
    """A single unit price for a plan in one currency, or a table with one per currency."""
    if isinstance(value, dict):
        if set(value) != set(currencies):
            raise CatalogError(
                f"{where}: overage {key} needs a price in each of the plan's currencies "
                f"({', '.join(currencies)}), not {', '.join(value) or 'none'}"
            )
        return {code: _unit_price(where, key, value[code]) for code in currencies}
    if len(currencies) > 1:
        raise CatalogError(
            f"{where}: overage {key} needs a table with a price per currency "
            f"({', '.join(currencies)}), since the plan is offered in several"
        )
    return {currencies[0]: _unit_price(where, key, value)}


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


@dataclass(frozen=True)
class TopUp:
    """A top-up pack: `amount` units of a metered `resource` that raise the organization's
    allowance until used up, sold at a price per currency (the first its default)."""

    id: str
    name: str
    resource: str
    amount: int
    prices: Mapping[str, Money]

    def price(self, currency: str) -> Money:
        """The pack's price in `currency`; CURRENCY_NOT_OFFERED when it has none."""
        money = self.prices.get(currency)
        if money is None:
            raise InvalidInput(
                ErrorCode.CURRENCY_NOT_OFFERED,
                f"top-up {self.id!r} is not sold in {currency}; "
                f"it is sold in {', '.join(self.prices)}",
                field="currency",
            )
        return money


_TOPUP_FIELDS = frozenset({"name", "price", "currency"})


def _parse_topup(topup_id: str, table: Any, source: str) -> TopUp:
    """`[topups.<id>]`: one resource key with its amount (`tokens = 50_000_000`), `price`
    ("49.00" with `currency`, or `{ EUR = "49.00", USD = "55.00" }`), an optional `name`."""
    where = f"{source}: top-up {topup_id!r}"
    if not isinstance(table, dict):
        raise CatalogError(f"{where} must be a table")
    amounts = [(key, value) for key, value in table.items() if key not in _TOPUP_FIELDS]
    if len(amounts) != 1:
        raise CatalogError(
            f"{where} needs exactly one resource with its amount, e.g. tokens = 50_000_000"
        )
    resource, amount = amounts[0]
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise CatalogError(f"{where}: {resource} must be a positive whole number")
    name = table.get("name", topup_id)
    if not isinstance(name, str):
        raise CatalogError(f"{where}: name must be a string")
    price, currency = table.get("price"), table.get("currency")
    if isinstance(price, str):
        if not isinstance(currency, str):
            raise CatalogError(f'{where}: price = "49.00" needs currency = "EUR"')
        price = {currency: price}
    if not isinstance(price, dict) or not price:
        raise CatalogError(f'{where} needs price ("49.00" with currency, or a table per currency)')
    prices: dict[str, Money] = {}
    for code, value in price.items():
        try:
            prices[code] = Money.parse(value, code) if isinstance(value, str) else Money(-1, code)
        except ValueError as error:
            raise CatalogError(f"{where}: {error}") from None
        if prices[code].amount_minor <= 0:
            raise CatalogError(f'{where}: price {code} must be a positive string such as "49.00"')
    return TopUp(topup_id, name, resource, amount, prices)
