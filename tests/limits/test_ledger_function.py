"""The ledger function decides exactly like the Python reference (`limits/ledger.py`).

Hypothesis draws scenarios (limits of every policy with thresholds and spend caps, top-ups,
groups of events on a metered resource and a gauge with replays and repeated keys, gauges going
down, reservations held, committed, released and expired as the clock moves) and plays each on
two organizations of the same PostgreSQL database: one through `ledger.apply` (Python), one
through `tally_apply_usage` (one call). Every answer, and then every counter, allowance, alert,
event, reservation and rollup row, must be the same.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from billing.accounts import open_account
from core.clock import FrozenClock
from core.config import Settings
from core.errors import DomainError
from core.orgs import Organization
from limits import UsageInput, hookimpl, repository
from limits.resource import Limit, Policy, Resource
from tally.runtime import Runtime, build_runtime
from tests.conftest import START

EXAMPLES = int(os.environ.get("TALLY_LEDGER_EXAMPLES", "60"))
RESOURCES = ("tokens", "documents")  # a metered resource and a gauge


@dataclass(frozen=True)
class Event:
    resource: str
    amount: int
    key: str


@dataclass(frozen=True)
class Group:
    events: tuple[Event, ...]


@dataclass(frozen=True)
class Reserve:
    amount: int
    ttl_seconds: int
    key: str


@dataclass(frozen=True)
class Commit:
    which: int
    amount: int


@dataclass(frozen=True)
class Release:
    which: int


@dataclass(frozen=True)
class Advance:
    seconds: int


@dataclass(frozen=True)
class TopUp:
    amount: int


@dataclass(frozen=True)
class Replay:
    """An earlier group sent again as it was."""

    which: int


Step = Group | Replay | Reserve | Commit | Release | Advance | TopUp


@dataclass(frozen=True)
class Scenario:
    limits: dict[str, Limit]
    steps: tuple[Step, ...]


keys = st.sampled_from([f"k{i}" for i in range(8)])
limits = st.builds(
    Limit,
    value=st.sampled_from([None, 0, 5, 20, 40, 60]),
    policy=st.sampled_from([Policy.HARD, Policy.HARD, Policy.SOFT, Policy.OVERAGE]),
    thresholds=st.lists(st.integers(1, 120), max_size=3, unique=True).map(
        lambda ts: tuple(sorted(ts))
    ),
    overage_cap=st.one_of(st.none(), st.integers(0, 30)),
)
# Few amounts and keys, so that keys come back, with the same amount (replays) or not (reused).
events = st.one_of(
    st.builds(Event, st.just("tokens"), st.sampled_from([0, 1, 7, 20, 30]), keys),
    st.builds(Event, st.just("documents"), st.sampled_from([-12, -3, 1, 7, 20]), keys),
)
steps = st.one_of(
    st.builds(Group, st.lists(events, min_size=1, max_size=6).map(tuple)),
    st.builds(Replay, st.integers(0, 5)),
    st.builds(Reserve, st.integers(1, 30), st.integers(1, 30), keys),
    st.builds(Commit, st.integers(0, 5), st.integers(0, 30)),
    st.builds(Release, st.integers(0, 5)),
    st.builds(Advance, st.integers(1, 40)),
    st.builds(TopUp, st.integers(1, 40)),
)
scenarios = st.builds(
    Scenario,
    st.fixed_dictionaries({name: limits for name in RESOURCES}),
    st.lists(steps, min_size=1, max_size=14).map(tuple),
)


class ScenarioLimits:
    """Answers the current scenario's limits (registered last, so asked first)."""

    def __init__(self) -> None:
        self.limits: dict[str, Limit] = {}

    @hookimpl
    def tally_resolve_limit(self, organization: Organization, resource: Resource) -> Limit | None:
        return self.limits.get(resource.key)


class Twin:
    """One runtime: the ledger function on or off, with its own clock and limits."""

    def __init__(self, url: str, function: bool) -> None:
        self.clock = FrozenClock(START)
        self.limits = ScenarioLimits()
        self.runtime: Runtime = build_runtime(
            Settings(database_url=url), self.clock, plugins=[(self.limits, "scenario-limits")]
        )
        self.runtime.engine.ledger_function = function

    async def play(self, scenario: Scenario) -> tuple[list[Any], dict[str, Any]]:
        runtime, engine = self.runtime, self.runtime.engine
        self.clock.set(START)
        self.limits.limits = scenario.limits
        async with runtime.db.write() as session:
            account = await open_account(
                session,
                engine,
                runtime.catalog,
                name="Twin",
                plan_id="ecommerce-enterprise",
                owner_email="owner@example.com",
                anchor_day=1,
            )
        organization = account.organization
        answers: list[Any] = []
        held: list[str | None] = []
        groups: list[Group] = []
        for step in scenario.steps:
            if isinstance(step, Replay):
                if not groups:
                    continue
                step = groups[step.which % len(groups)]
            elif isinstance(step, Group):
                groups.append(step)
            try:
                answers.append(await self._step(organization, step, held))
            except DomainError as error:
                answers.append(("error", error.code))
        return answers, await self._state(organization.id)

    async def _step(self, organization: Organization, step: Step, held: list[str | None]) -> Any:
        engine = self.runtime.engine
        if isinstance(step, Advance):
            self.clock.advance(timedelta(seconds=step.seconds))
            return None
        async with self.runtime.db.write() as session:
            if isinstance(step, Group):
                usage = [UsageInput(e.resource, e.amount, e.key) for e in step.events]
                return await engine.record(session, organization, usage)
            if isinstance(step, Reserve):
                outcome = await engine.reserve(
                    session,
                    organization,
                    "tokens",
                    step.amount,
                    ttl=timedelta(seconds=step.ttl_seconds),
                    idempotency_key=f"r-{step.key}",
                )
                held.append(None if outcome.reservation is None else outcome.reservation.id)
                return outcome.decision
            if isinstance(step, TopUp):
                now = self.clock.now()
                return await repository.grant_allowance(
                    session, organization.id, "tokens", step.amount, now
                )
            chosen = [rid for rid in held if rid is not None]
            if not chosen:
                return None
            reservation = chosen[step.which % len(chosen)]
            if isinstance(step, Commit):
                return await engine.commit(session, organization, reservation, step.amount)
            released = await engine.release(session, organization, reservation)
            return (released.status, released.amount)

    async def _state(self, organization_id: str) -> dict[str, Any]:
        queries = {
            "counters": "SELECT resource, period_start, used, reserved, drawn "
            "FROM usage_counters WHERE organization_id = :o ORDER BY 1, 2",
            "allowances": "SELECT resource, remaining, granted FROM usage_allowances "
            "WHERE organization_id = :o ORDER BY 1",
            "alerts": "SELECT resource, period_start, kind, threshold, used, limit_value, "
            "crossed_at FROM usage_alerts WHERE organization_id = :o ORDER BY 1, 2, 3, 4",
            # a reservation's event is keyed by its id: named here by the reservation's key
            "events": "SELECT e.resource, coalesce('reservation:' || r.idempotency_key, "
            "e.idempotency_key) AS k, e.amount, e.period_start, e.occurred_at, e.used_after, "
            "e.limit_value, e.model, e.action, e.cost_micros, e.attributes::text "
            "FROM usage_events AS e "
            "JOIN organization_refs AS o ON o.ref = e.organization_ref "
            "LEFT JOIN usage_reservations AS r ON e.idempotency_key = 'reservation:' || r.id "
            "WHERE o.organization_id = :o AND e.resource IN ('tokens', 'documents') "
            "ORDER BY k",
            "reservations": "SELECT resource, amount, idempotency_key, status, expires_at "
            "FROM usage_reservations WHERE organization_id = :o ORDER BY idempotency_key",
            "rollups": "SELECT resource, grain, bucket, model, action, amount, cost_micros, "
            "unpriced_amount, events FROM usage_rollups WHERE organization_id = :o "
            "ORDER BY 1, 2, 3, 4, 5",
            "totals": "SELECT resource, grain, bucket, amount, cost_micros, unpriced_amount, "
            "events FROM usage_rollup_totals WHERE organization_id = :o ORDER BY 1, 2, 3",
        }
        async with self.runtime.db.read() as session:
            state = {}
            for name, sql in queries.items():
                rows = await session.execute(text(sql), {"o": organization_id})
                state[name] = [tuple(row) for row in rows]
            return state


@pytest.fixture
def twins(database_url: str) -> Iterator[tuple[BlockingPortal, Twin, Twin]]:
    if not database_url.startswith("postgresql"):
        pytest.skip("the ledger function is PostgreSQL's; SQLite runs the Python reference")
    with start_blocking_portal() as portal:
        reference, function = Twin(database_url, False), Twin(database_url, True)
        try:
            yield portal, reference, function
        finally:
            portal.call(reference.runtime.db.dispose)
            portal.call(function.runtime.db.dispose)


def test_the_ledger_function_decides_like_the_reference(
    twins: tuple[BlockingPortal, Twin, Twin],
) -> None:
    portal, reference, function = twins
    played: Counter[str] = Counter()

    @given(scenario=scenarios)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def same(scenario: Scenario) -> None:
        expected = portal.call(reference.play, scenario)
        answered = portal.call(function.play, scenario)
        assert answered[0] == expected[0]
        assert answered[1] == expected[1]
        for answer in expected[0]:
            if isinstance(answer, list):
                played["groups"] += 1
                played.update(decision.status for decision in answer)
            elif isinstance(answer, tuple) and answer[0] == "error":
                played[str(answer[1])] += 1

    same()
    print(f"ledger function vs reference: {played}")
    # a group with a reused key is refused whole (IDEMPOTENCY_KEY_REUSED), on both sides
    reused = played["reused"] + played["IDEMPOTENCY_KEY_REUSED"]
    assert reused and all(played[status] for status in ("accepted", "rejected", "duplicate"))
