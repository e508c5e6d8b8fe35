"""The exact write path: a batch of prepared events decided in order under counter locks.

Every counter the batch touches is locked (in key order, so concurrent batches never
deadlock), every decision is made against the locked values, and events, counters, rollups
and alerts are written in the caller's transaction. One batch or many concurrent ones, the
result is the same as applying the events one by one: never over a hard limit, never an
idempotency key counted twice, never a refusal while room remained.

Extra allowances (top-ups) follow the same rule: the room of a metered counter is its plan's
limit, then what the period already drew from the allowance, then what remains of it. The
allowance's row is read (locked, after the counters) only when an event passes the plan's
limit and what the period drew, so usage within the plan pays no extra round trip; usage past
the plan's limit is drawn from the allowance first (`drawn`), and only the rest is overage.
An overage limit with a spend cap refuses what would pass it, like a hard limit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.ids import new_id
from core.orgs import Organization
from limits import repository
from limits.repository import CounterKey, CounterState, StoredEvent
from limits.resource import Limit, Resource
from limits.types import Decision, PreparedEvent, UsageEvent

SPEND_CAP_THRESHOLDS = (80, 100)
"""Percents of the spend cap at which a `spend_cap` alert is raised, once per period."""


class KeyRace(Exception):
    """An idempotency key was inserted by a concurrent transaction after it was looked up."""


class Allowances:
    """Extra allowances (top-ups) of one organization, read the first time an event needs
    one: locked for a write, read as they stand for a check."""

    def __init__(self, session: AsyncSession, organization_id: str, *, lock: bool) -> None:
        self.session = session
        self.organization_id = organization_id
        self.lock = lock
        self.remaining: dict[str, int] = {}
        self.drawn: set[str] = set()

    def known(self, resource: str) -> int:
        """What remains of the allowance, if read already; else 0."""
        return self.remaining.get(resource, 0)

    async def read(self, resource: str) -> int:
        if resource not in self.remaining:
            self.remaining[resource] = await repository.allowance(
                self.session, self.organization_id, resource, lock=self.lock
            )
        return self.remaining[resource]

    def draw(self, resource: str, state: CounterState, limit: Limit) -> None:
        """Move the usage past the plan's limit not yet drawn onto the allowance, as far as
        it goes."""
        if limit.value is None:
            return
        wanted = state.used - limit.value - state.drawn
        taken = min(wanted, self.known(resource))
        if taken > 0:
            state.drawn += taken
            self.remaining[resource] -= taken
            self.drawn.add(resource)

    def changed(self) -> dict[str, int]:
        return {resource: self.remaining[resource] for resource in sorted(self.drawn)}


@dataclass
class Applied:
    """The decisions of a batch, in input order, and what observers are owed after commit."""

    decisions: list[Decision]
    recorded: dict[str, list[UsageEvent]] = field(default_factory=dict)
    crossed: list[tuple[Resource, int, Decision]] = field(default_factory=list)
    capped: list[tuple[Resource, int, Decision]] = field(default_factory=list)


def fits(state: CounterState, amount: int, limit: Limit, extra: int = 0) -> bool:
    """Whether `amount` may be added: never below zero, never past a hard limit (or a spend
    cap) raised by what the period drew from the extra allowance and `extra`, what remains."""
    if amount <= 0:
        return state.used + amount >= 0
    ceiling = limit.ceiling()
    return ceiling is None or state.used + state.reserved + amount <= ceiling + state.drawn + extra


def passes_plan(resource: Resource, state: CounterState, amount: int, limit: Limit) -> bool:
    """Whether `amount` takes a metered counter past its plan's limit and what the period
    already drew: only then does the extra allowance matter."""
    return (
        resource.resets
        and amount > 0
        and limit.value is not None
        and state.used + state.reserved + amount > limit.value + state.drawn
    )


def replay(stored: StoredEvent, limit: Limit, key: str) -> Decision:
    return Decision(
        stored.resource,
        "duplicate",
        stored.amount,
        stored.used_after,
        stored.limit_value,
        limit.policy,
        key,
    )


async def decide(
    session: AsyncSession,
    organization: Organization,
    events: Sequence[PreparedEvent],
    limits: Mapping[str, Limit],
    states: dict[CounterKey, CounterState],
    now: datetime,
    *,
    sweep: bool,
    stored: Mapping[str, StoredEvent] | None = None,
    allowances: Allowances | None = None,
) -> tuple[list[Decision], list[tuple[PreparedEvent, Decision]]]:
    """Decide each event in order against `states` (and `allowances`), updating them; returns
    the decisions and the accepted events. Expired reservations are swept (or, with
    `sweep=False`, read) only when they stand between an event and its room."""
    if allowances is None:
        allowances = Allowances(session, organization.id, lock=sweep)
    if stored is None:
        stored = await repository.find_events(
            session, organization.id, (e.idempotency_key for e in events)
        )
    expired: dict[CounterKey, int] | None = None
    swept: set[CounterKey] = set()
    decisions: list[Decision] = []
    accepted: dict[str, Decision] = {}
    chosen: list[tuple[PreparedEvent, Decision]] = []
    for event in events:
        limit = limits[event.resource.key]
        key = event.idempotency_key
        if key in stored:
            decisions.append(replay(stored[key], limit, key))
            continue
        if key in accepted:
            decisions.append(replace(accepted[key], status="duplicate"))
            continue
        state = states[event.counter]
        state.reserved -= event.reserved_amount
        name = event.resource.key
        if passes_plan(event.resource, state, event.amount, limit):
            await allowances.read(name)
        blocked = (
            not fits(state, event.amount, limit, allowances.known(name)) and state.reserved > 0
        )
        if blocked and event.counter not in swept:
            swept.add(event.counter)
            if sweep:
                freed = await repository.expire_reservations(
                    session, organization.id, event.counter, now
                )
            else:
                if expired is None:
                    expired = await repository.expired_holds(session, organization.id, now)
                freed = expired.get(event.counter, 0)
            state.reserved -= freed
        room = fits(state, event.amount, limit, allowances.known(name))
        if room:
            state.used += event.amount
            allowances.draw(name, state, limit)
        else:
            state.reserved += event.reserved_amount
        decision = Decision(
            event.resource.key,
            "accepted" if room else "rejected",
            event.amount,
            state.used,
            limit.value,
            limit.policy,
            key,
            state.reserved,
            state.drawn + allowances.known(name) if event.resource.resets else 0,
        )
        if room:
            accepted[key] = decision
            chosen.append((event, decision))
        decisions.append(decision)
    return decisions, chosen


async def apply(
    session: AsyncSession,
    organization: Organization,
    events: Sequence[PreparedEvent],
    limits: Mapping[str, Limit],
    now: datetime,
) -> Applied:
    """Apply a prepared batch in the session's transaction; raises KeyRace (then retry)."""
    stored = await repository.find_events(
        session, organization.id, (e.idempotency_key for e in events)
    )
    states = await repository.lock_counters(session, organization.id, [e.counter for e in events])
    before = {key: replace(s) for key, s in states.items()}
    allowances = Allowances(session, organization.id, lock=True)
    decisions, chosen = await decide(
        session,
        organization,
        events,
        limits,
        states,
        now,
        sweep=True,
        stored=stored,
        allowances=allowances,
    )
    refused = [d.idempotency_key for d in decisions if d.status == "rejected"]
    if refused:
        # Keys were read before the lock: one committed meanwhile is a replay, not a refusal.
        late = await repository.find_events(session, organization.id, refused)
        decisions = [
            replay(late[d.idempotency_key], limits[d.resource], d.idempotency_key)
            if d.status == "rejected" and d.idempotency_key in late
            else d
            for d in decisions
        ]
    rows = [_event_row(organization.id, event, decision, now) for event, decision in chosen]
    if len(await repository.insert_events(session, rows)) != len(rows):
        raise KeyRace()
    await repository.write_counters(
        session, organization.id, {k: s for k, s in states.items() if s != before[k]}
    )
    await repository.write_allowances(session, organization.id, allowances.changed(), now)
    await repository.add_rollups(session, _rollup_rows(organization.id, chosen))
    applied = Applied(decisions)
    for event, _ in chosen:
        applied.recorded.setdefault(event.resource.key, []).append(
            UsageEvent(
                organization.id,
                event.resource.key,
                event.amount,
                event.idempotency_key,
                event.occurred_at,
                event.attributes,
                event.cost_micros,
            )
        )
    applied.crossed, applied.capped = await _thresholds(
        session, organization.id, chosen, limits, before, states, now
    )
    return applied


def _event_row(
    organization_id: str, event: PreparedEvent, decision: Decision, now: datetime
) -> dict[str, Any]:
    return {
        "id": new_id(),
        "organization_id": organization_id,
        "resource": event.resource.key,
        "idempotency_key": event.idempotency_key,
        "amount": event.amount,
        "period_start": event.period_start,
        "occurred_at": event.occurred_at,
        "recorded_at": now,
        "used_after": decision.used,
        "limit_value": decision.limit,
        "model": event.model,
        "action": event.action,
        "cost_micros": event.cost_micros,
        "attributes": dict(event.attributes),
    }


def _rollup_rows(
    organization_id: str, chosen: Sequence[tuple[PreparedEvent, Decision]]
) -> list[dict[str, Any]]:
    totals: dict[tuple[str, datetime, str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for event, _ in chosen:
        total = totals[(event.resource.key, event.hour, event.model or "", event.action or "")]
        total[0] += event.amount
        total[1] += event.cost_micros or 0
        total[2] += event.amount if event.cost_micros is None else 0
        total[3] += 1
    return [
        {
            "organization_id": organization_id,
            "resource": name,
            "hour": hour,
            "model": model,
            "action": action,
            "amount": amount,
            "cost_micros": cost,
            "unpriced_amount": unpriced,
            "events": count,
        }
        for (name, hour, model, action), (amount, cost, unpriced, count) in totals.items()
    ]


async def _thresholds(
    session: AsyncSession,
    organization_id: str,
    chosen: Sequence[tuple[PreparedEvent, Decision]],
    limits: Mapping[str, Limit],
    before: Mapping[CounterKey, CounterState],
    after: Mapping[CounterKey, CounterState],
    now: datetime,
) -> tuple[list[tuple[Resource, int, Decision]], list[tuple[Resource, int, Decision]]]:
    """Thresholds crossed by this batch, recorded once per period (the alert's key): percents
    of the limit ("limit" alerts), and percents of the spend cap ("spend_cap" alerts, on the
    overage past the limit and the extra allowance)."""
    last: dict[CounterKey, tuple[Resource, Decision]] = {}
    for event, decision in chosen:
        last[event.counter] = (event.resource, decision)
    rows, owners = [], {}
    for counter, (resource, decision) in last.items():
        limit = limits[resource.key]
        owners[resource.key] = (resource, decision)
        if not limit.value:
            continue
        old = before[counter].used
        for threshold in limit.thresholds:
            if old * 100 < threshold * limit.value <= decision.used * 100:
                rows.append(_alert(organization_id, counter, "limit", threshold,
                                   decision.used, limit.value, now))  # fmt: skip
        cap = limit.overage_cap
        if not limit.capped or not cap:
            continue
        spent_before = _overage(before[counter], limit.value)
        spent = _overage(after[counter], limit.value)
        for threshold in SPEND_CAP_THRESHOLDS:
            if spent_before * 100 < threshold * cap <= spent * 100:
                rows.append(_alert(organization_id, counter, "spend_cap", threshold,
                                   spent, cap, now))  # fmt: skip
    crossed: list[tuple[Resource, int, Decision]] = []
    capped: list[tuple[Resource, int, Decision]] = []
    for name, kind, threshold in await repository.insert_alerts(session, rows):
        resource, decision = owners[name]
        (capped if kind == "spend_cap" else crossed).append((resource, threshold, decision))
    return crossed, capped


def _overage(state: CounterState, limit: int) -> int:
    return max(state.used - limit - state.drawn, 0)


def _alert(
    organization_id: str,
    counter: CounterKey,
    kind: str,
    threshold: int,
    used: int,
    limit: int,
    now: datetime,
) -> dict[str, Any]:
    return {
        "organization_id": organization_id,
        "resource": counter[0],
        "period_start": counter[1],
        "kind": kind,
        "threshold": threshold,
        "used": used,
        "limit_value": limit,
        "crossed_at": now,
    }
