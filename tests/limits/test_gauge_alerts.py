"""A gauge has no period: each threshold fires whenever the count reaches it from below, at
the instant it did, and is armed again once the count falls back below it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from billing.accounts import OpenedAccount
from core.clock import FrozenClock
from core.config import Settings
from core.orgs import Organization
from limits import Decision, Resource, UsageInput, hookimpl
from tally.runtime import Runtime, build_runtime
from tests.conftest import START
from tests.limits.conftest import consume, open_tiny
from tests.support import graphql, write_plans

pytestmark = pytest.mark.anyio

PLANS = """
[plans.tiny]
name = "Tiny"
price_monthly = "1.00"
currency = "EUR"
[plans.tiny.limits]
tokens = 100
documents = 5
"""

ALERTS = """{ organization { alerts { resource threshold used limit periodStart crossedAt } } }"""


class Recorder:
    def __init__(self) -> None:
        self.crossed: list[tuple[str, int, int]] = []

    @hookimpl
    def tally_threshold_crossed(
        self, organization: Organization, resource: Resource, threshold: int, usage: Decision
    ) -> None:
        self.crossed.append((resource.key, threshold, usage.used))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def runtime(
    database_url: str, tmp_path: Path, clock: FrozenClock, recorder: Recorder
) -> AsyncIterator[Runtime]:
    plans = write_plans(tmp_path / "plans.toml", PLANS)
    runtime = build_runtime(
        Settings(database_url=database_url, plans_path=plans), clock, [(recorder, "recorder")]
    )
    yield runtime
    await runtime.db.dispose()


def instant(hours: int) -> str:
    return (START + timedelta(hours=hours)).isoformat()


def alert(threshold: int, used: int, hours: int) -> dict[str, object]:
    return {
        "resource": "documents",
        "threshold": threshold,
        "used": used,
        "limit": 5,
        "periodStart": instant(hours),
        "crossedAt": instant(hours),
    }


async def documents(
    runtime: Runtime, account: OpenedAccount, clock: FrozenClock, hours: int, *amounts: int
) -> None:
    clock.set(START + timedelta(hours=hours))
    usage = [
        UsageInput("documents", amount, f"d{hours}-{index}", None, {"kind": "faq"})
        for index, amount in enumerate(amounts)
    ]
    async with runtime.db.write() as session:
        decisions = await runtime.engine.record(session, account.organization, usage)
    assert {decision.status for decision in decisions} == {"accepted"}


async def test_a_gauge_threshold_fires_again_after_the_count_fell_below_it(
    runtime: Runtime,
    client: httpx.AsyncClient,
    clock: FrozenClock,
    recorder: Recorder,
) -> None:
    account = await open_tiny(runtime)
    await documents(runtime, account, clock, 0, 5)  # 80 % and 100 %
    await documents(runtime, account, clock, 1, -1)  # 4: below 100 %, still at 80 %
    await documents(runtime, account, clock, 2, 1)  # 100 % again
    await documents(runtime, account, clock, 3, -1, 1)  # below and back in one group
    await documents(runtime, account, clock, 4, -2)  # 3: below both
    await documents(runtime, account, clock, 5, 1, 1)  # 80 % at 4, then 100 % at 5

    assert recorder.crossed == [
        ("documents", 80, 5),
        ("documents", 100, 5),
        ("documents", 100, 5),
        ("documents", 100, 5),
        ("documents", 80, 4),
        ("documents", 100, 5),
    ]
    body = await graphql(client, account.owner_api_key, ALERTS)
    assert body["data"]["organization"]["alerts"] == [
        alert(100, 5, 5),
        alert(80, 4, 5),
        alert(100, 5, 3),
        alert(100, 5, 2),
        alert(100, 5, 0),
        alert(80, 5, 0),
    ]


async def test_metered_alerts_stay_once_per_period_keyed_by_it(
    runtime: Runtime, client: httpx.AsyncClient, recorder: Recorder
) -> None:
    account = await open_tiny(runtime)
    await consume(runtime, account, "tokens", 90, "a")
    await consume(runtime, account, "tokens", 10, "b")
    body = await graphql(client, account.owner_api_key, ALERTS)
    assert [
        (a["threshold"], a["used"], a["periodStart"], a["crossedAt"])
        for a in body["data"]["organization"]["alerts"]
    ] == [
        (100, 100, "2026-03-01T00:00:00+00:00", START.isoformat()),
        (80, 90, "2026-03-01T00:00:00+00:00", START.isoformat()),
    ]
    assert recorder.crossed == [("tokens", 80, 90), ("tokens", 100, 100)]
