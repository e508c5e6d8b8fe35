"""Thresholds fire exactly once per period and threshold, also under concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.clock import FrozenClock
from core.config import Settings
from core.orgs import Organization
from limits import Decision, Resource, hookimpl
from limits import repository as limits_repository
from tally.runtime import Runtime, build_runtime
from tests.limits.conftest import PLANS, consume, open_tiny
from tests.support import write_plans

pytestmark = pytest.mark.anyio


class Recorder:
    def __init__(self) -> None:
        self.crossed: list[tuple[str, str, int, int]] = []

    @hookimpl
    def tally_threshold_crossed(
        self, organization: Organization, resource: Resource, threshold: int, usage: Decision
    ) -> None:
        self.crossed.append((organization.id, resource.key, threshold, usage.used))


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


async def test_hook_tally_threshold_crossed(runtime: Runtime, recorder: Recorder) -> None:
    account = await open_tiny(runtime)
    await consume(runtime, account, "tokens", 49, "a")
    assert recorder.crossed == []
    await consume(runtime, account, "tokens", 40, "b")
    await consume(runtime, account, "tokens", 11, "c")
    organization = account.organization.id
    assert recorder.crossed == [
        (organization, "tokens", 50, 89),
        (organization, "tokens", 80, 89),
        (organization, "tokens", 100, 100),
    ]
    async with runtime.db.read() as session:
        alerts = await limits_repository.list_alerts(
            session, organization, runtime.engine.period(account.organization).start
        )
    assert sorted(a.threshold for a in alerts) == [50, 80, 100]


async def test_concurrent_consumers_fire_each_threshold_once(
    runtime: Runtime, recorder: Recorder
) -> None:
    account = await open_tiny(runtime)
    await asyncio.gather(*(consume(runtime, account, "tokens", 1, f"u{i}") for i in range(120)))
    assert sorted(t for _, _, t, _ in recorder.crossed) == [50, 80, 100]


async def test_a_new_period_fires_again_and_gauges_use_the_default_thresholds(
    runtime: Runtime, recorder: Recorder, clock: FrozenClock
) -> None:
    account = await open_tiny(runtime)
    await consume(runtime, account, "tokens", 100, "march")
    clock.set(datetime(2026, 4, 2, tzinfo=UTC))
    await consume(runtime, account, "tokens", 100, "april")
    assert [t for _, _, t, _ in recorder.crossed] == [50, 80, 100, 50, 80, 100]
    await consume(runtime, account, "documents", 3, "docs", kind="faq")
    assert [(r, t) for _, r, t, _ in recorder.crossed[-2:]] == [
        ("documents", 80),
        ("documents", 100),
    ]
    async with runtime.db.read() as session:
        alerts = await limits_repository.list_alerts(
            session, account.organization.id, runtime.engine.period(account.organization).start
        )
    assert [(a.resource, a.threshold) for a in alerts if a.resource == "documents"] == [
        ("documents", 100),
        ("documents", 80),
    ]


async def test_an_observer_that_fails_never_undoes_the_usage(
    database_url: str, clock: FrozenClock, tmp_path: Path
) -> None:
    class Broken:
        @hookimpl
        def tally_threshold_crossed(self) -> None:
            raise RuntimeError("observer down")

    plans = write_plans(tmp_path / "plans.toml", PLANS)
    runtime = build_runtime(
        Settings(database_url=database_url, plans_path=plans), clock, [(Broken(), "broken")]
    )
    try:
        account = await open_tiny(runtime)
        assert (await consume(runtime, account, "tokens", 100, "all")).status == "accepted"
        clock.advance(timedelta(seconds=1))
        async with runtime.db.read() as session:
            snapshot = await runtime.engine.usage(session, account.organization)
        assert snapshot.get("tokens").used == 100
    finally:
        await runtime.db.dispose()
