"""The exact write path: a batch of prepared events decided in order under counter locks.

Every counter the batch touches is locked (in key order, so concurrent batches never
deadlock), every decision is made against the locked values, and events, counters, rollups
and alerts are written in the caller's transaction. One batch or many concurrent ones, the
result is the same as applying the events one by one: never over a hard limit, never an
idempotency key counted twice, never a refusal while room remained.
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


class KeyRace(Exception):
    """An idempotency key was inserted by a concurrent transaction after it was looked up."""


@dataclass
class Applied:
    """The decisions of a batch, in input order, and what observers are owed after commit."""

    decisions: list[Decision]
    recorded: dict[str, list[UsageEvent]] = field(default_factory=dict)
    crossed: list[tuple[Resource, int, Decision]] = field(default_factory=list)


def fits(state: CounterState, amount: int, limit: Limit) -> bool:
    """Whether `amount` may be added: never below zero, never past a hard limit."""
    if amount <= 0:
        return state.used + amount >= 0
    ceiling = limit.ceiling()
    return ceiling is None or state.used + state.reserved + amount <= ceiling


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
) -> tuple[list[Decision], list[tuple[PreparedEvent, Decision]]]:
    """Decide each event in order against `states`, updating them; returns the decisions and
    the accepted events. Expired reservations are swept (or, with `sweep=False`, read) only
    when they stand between an event and its room."""
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
        blocked = not fits(state, event.amount, limit) and state.reserved > 0
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
        room = fits(state, event.amount, limit)
        if room:
            state.used += event.amount
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
    before = {key: CounterState(s.used, s.reserved) for key, s in states.items()}
    decisions, chosen = await decide(
        session, organization, events, limits, states, now, sweep=True, stored=stored
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
    applied.crossed = await _thresholds(session, organization.id, chosen, limits, before, now)
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
    now: datetime,
) -> list[tuple[Resource, int, Decision]]:
    """Thresholds crossed by this batch, recorded once per period (the alert's key)."""
    last: dict[CounterKey, tuple[Resource, Decision]] = {}
    for event, decision in chosen:
        last[event.counter] = (event.resource, decision)
    rows, owners = [], {}
    for counter, (resource, decision) in last.items():
        limit = limits[resource.key]
        if not limit.value:
            continue
        old = before[counter].used
        for threshold in limit.thresholds:
            if old * 100 < threshold * limit.value <= decision.used * 100:
                rows.append(
                    {
                        "organization_id": organization_id,
                        "resource": resource.key,
                        "period_start": counter[1],
                        "threshold": threshold,
                        "used": decision.used,
                        "limit_value": limit.value,
                        "crossed_at": now,
                    }
                )
                owners[resource.key] = (resource, decision)
    inserted = await repository.insert_alerts(session, rows)
    return [(owners[name][0], threshold, owners[name][1]) for name, threshold in inserted]
