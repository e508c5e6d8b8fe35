"""Plan recommendations: burn rate from the organization's start, resources some plans only
list, and the resources a plan leaves unlimited."""

from __future__ import annotations

from pathlib import Path

import pytest

from billing.catalog import Catalog
from billing.recommend import projected, recommend
from limits import Limit, Period, Resource, ResourceUsage, UsageSnapshot
from tests.support import at, write_plans

MARCH = Period(at(2026, 3, 1), at(2026, 4, 1))
TOKENS = Resource(key="tokens", label="AI Tokens", unit="tokens", kind="metered")
SEATS = Resource(key="seats", label="Seats", unit="seats", kind="gauge", display="exact")
SYNCS = Resource(key="crm_syncs", label="CRM syncs", unit="syncs", kind="metered")
PLANS = """
[plans.basic]
name = "Basic"
price_monthly = { EUR = "10.00", USD = "12.00" }
[plans.basic.limits]
tokens = 1000
seats = 2

[plans.partner]
name = "Partner"
price_monthly = { EUR = "50.00", USD = "60.00" }
[plans.partner.limits]
tokens = 10000
seats = 5
crm_syncs = 100

[plans.big]
name = "Big"
price_monthly = { EUR = "90.00", USD = "55.00" }
[plans.big.limits]
tokens = "unlimited"
seats = 20

[plans.euro]
name = "Euro only"
price_monthly = "20.00"
currency = "EUR"
[plans.euro.limits]
tokens = 100000
seats = 10
"""


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return Catalog.load(write_plans(tmp_path / "plans.toml", PLANS))


def meter(resource: Resource, used: int) -> ResourceUsage:
    return ResourceUsage(resource, used, Limit(None))


def test_burn_rate_of_an_organization_opened_during_the_period_counts_from_its_opening() -> None:
    usage = UsageSnapshot(MARCH, (meter(TOKENS, 1_000),))
    tokens = usage.resources[0]
    now = at(2026, 3, 31)
    assert projected(tokens, usage, now) == 1_033
    assert projected(tokens, usage, now, started_at=at(2026, 3, 30)) == 2_000
    assert projected(tokens, usage, now, started_at=at(2026, 2, 10)) == 1_033
    assert projected(tokens, usage, at(2026, 3, 30, 12), started_at=at(2026, 3, 30)) == 2_000


def test_the_opening_changes_the_recommendation(catalog: Catalog) -> None:
    usage = UsageSnapshot(MARCH, (meter(TOKENS, 600), meter(SEATS, 1)))
    now = at(2026, 3, 29)
    from_period = recommend(catalog, "basic", usage, now)
    assert [r.plan.id for r in from_period if r.recommended] == ["basic"]
    from_opening = recommend(catalog, "basic", usage, now, started_at=at(2026, 3, 25))
    assert [r.plan.id for r in from_opening if r.recommended] == ["euro"]
    assert from_opening[0].reasons[0].projected == 600 * 7 // 4


def test_a_resource_some_plans_only_list_never_makes_a_plan_roomier(catalog: Catalog) -> None:
    usage = UsageSnapshot(MARCH, (meter(TOKENS, 100), meter(SEATS, 1), meter(SYNCS, 95)))
    ranked = recommend(catalog, "partner", usage, at(2026, 3, 31))
    assert [(r.plan.id, r.current, r.fits) for r in ranked] == [("partner", True, False)]
    basic = next(r for r in recommend(catalog, "basic", usage, at(2026, 3, 31)) if r.current)
    syncs = basic.reasons[2]
    assert (syncs.included, syncs.fits, syncs.limit) == (False, False, 0)
    assert syncs.message == "crm_syncs: projected 98, not included in Basic"
    assert "crm_syncs" not in basic.unlimited_resources


def test_an_unused_resource_a_plan_does_not_list_does_not_matter(catalog: Catalog) -> None:
    usage = UsageSnapshot(MARCH, (meter(TOKENS, 100), meter(SEATS, 1), meter(SYNCS, 0)))
    ranked = recommend(catalog, "partner", usage, at(2026, 3, 31))
    assert [r.plan.id for r in ranked if r.recommended] == ["basic"]


def test_recommendations_say_which_resources_a_plan_leaves_unlimited(
    catalog: Catalog, tmp_path: Path
) -> None:
    usage = UsageSnapshot(MARCH, (meter(TOKENS, 5_000), meter(SEATS, 1)))
    ranked = recommend(catalog, "basic", usage, at(2026, 3, 31))
    unlimited = {r.plan.id: r.unlimited_resources for r in ranked}
    assert unlimited == {"basic": (), "euro": (), "partner": (), "big": ("tokens",)}
    big = next(r for r in ranked if r.plan.id == "big")
    assert big.reasons[0].message == "tokens: projected 5.2K of unlimited"
    no_plan_lists_syncs = PLANS.replace("crm_syncs = 100\n", "")
    lone = Catalog.load(write_plans(tmp_path / "lone.toml", no_plan_lists_syncs))
    alone = UsageSnapshot(MARCH, (meter(SEATS, 1), meter(SYNCS, 1)))
    partner = next(r for r in recommend(lone, "partner", alone, at(2026, 3, 31)) if r.current)
    assert partner.fits and partner.unlimited_resources == ("crm_syncs",)


def test_plans_are_ranked_and_filtered_in_the_organizations_currency(catalog: Catalog) -> None:
    usage = UsageSnapshot(MARCH, (meter(TOKENS, 5_000), meter(SEATS, 1)))
    in_euros = recommend(catalog, "basic", usage, at(2026, 3, 31), currency="EUR")
    assert [(r.plan.id, r.recommended) for r in in_euros] == [
        ("basic", False), ("euro", True), ("partner", False), ("big", False)
    ]  # fmt: skip
    in_dollars = recommend(catalog, "basic", usage, at(2026, 3, 31), currency="USD")
    assert [(r.plan.id, r.recommended) for r in in_dollars] == [
        ("basic", False), ("big", True), ("partner", False)
    ]  # fmt: skip
