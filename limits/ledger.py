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

The rules a decision follows besides the limits (`ledger_pg` mirrors each):

- Idempotency: an event whose key is already recorded, or was accepted earlier in the group,
  with the same resource and amount is a replay (`duplicate`, answered with the first
  decision); with another resource or amount it is `reused` (`replay`): it counts nothing, and
  whoever asked for it is refused with IDEMPOTENCY_KEY_REUSED (a request whole, naming the
  event: `types.refuse_reused`), while the other events of a group commit go on. A key that
  was refused binds nothing: it may come again with another amount.
- Range: whatever the limit, a positive amount fits only while the counter's used + reserved
  + amount stays within `BIGINT_MAX` (2^63 - 1); past it the event is `rejected`, code
  AMOUNT_TOO_LARGE (`fits`).
- Expired holds: before any event is decided, each counter of the group that holds
  reservations gives back those expired at `now` (swept for a write, subtracted for a
  check), so `reserved`, and every `remaining`, never count them (`decide`).
- Thresholds: a percent of the limit is crossed when an accepted event takes its counter from
  below it to at or above it, event by event; the alert (and the hook's decision) is that
  event's. A metered counter's alert is keyed by its period (once per period); a gauge's by
  the crossing instant, `now`, so it fires again after the count fell below the threshold
  and came back, once per group at most (`_thresholds`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.orgs import Organization
from limits import repository
from limits.repository import CounterKey, CounterState, StoredEvent
from limits.resource import Limit, Resource
from limits.types import BIGINT_MAX, Decision, PreparedEvent, UsageEvent

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

    def record(self, organization_id: str, event: PreparedEvent) -> None:
        """Owe the `tally_usage_recorded` observers an accepted event."""
        self.recorded.setdefault(event.resource.key, []).append(
            UsageEvent(
                organization_id,
                event.resource.key,
                event.amount,
                event.idempotency_key,
                event.occurred_at,
                event.attributes,
                event.cost_micros,
            )
        )


def fits(state: CounterState, amount: int, limit: Limit, extra: int = 0) -> bool:
    """Whether `amount` may be added: never below zero, never past `BIGINT_MAX` (used +
    reserved + amount, whatever the limit), never past a hard limit (or a spend cap) raised
    by what the period drew from the extra allowance and `extra`, what remains."""
    if amount <= 0:
        return state.used + amount >= 0
    total = state.used + state.reserved + amount
    if total > BIGINT_MAX:
        return False
    ceiling = limit.ceiling()
    return ceiling is None or total <= ceiling + state.drawn + extra


def passes_plan(resource: Resource, state: CounterState, amount: int, limit: Limit) -> bool:
    """Whether `amount` takes a metered counter past its plan's limit and what the period
    already drew: only then does the extra allowance matter."""
    return (
        resource.resets
        and amount > 0
        and limit.value is not None
        and state.used + state.reserved + amount > limit.value + state.drawn
    )


def replay(stored: StoredEvent, limit: Limit, key: str, resource: str, amount: int) -> Decision:
    """The answer to an event (`resource`, `amount`) whose key is recorded: the first decision,
    `duplicate` when the event repeats its resource and amount, else `reused`."""
    same = stored.resource == resource and stored.amount == amount
    return Decision(
        stored.resource,
        "duplicate" if same else "reused",
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
    the decisions and the accepted events. First, the holds expired at `now` leave the
    counters that have holds: swept (marked expired) with `sweep`, else only subtracted."""
    if allowances is None:
        allowances = Allowances(session, organization.id, lock=sweep)
    if stored is None:
        stored = await repository.find_events(
            session, organization.id, (e.idempotency_key for e in events)
        )
    await release_expired(session, organization.id, states, now, sweep=sweep)
    decisions: list[Decision] = []
    accepted: dict[str, Decision] = {}
    chosen: list[tuple[PreparedEvent, Decision]] = []
    for event in events:
        limit = limits[event.resource.key]
        key = event.idempotency_key
        if key in stored:
            decisions.append(replay(stored[key], limit, key, event.resource.key, event.amount))
            continue
        if key in accepted:
            first = accepted[key]
            same = first.resource == event.resource.key and first.requested == event.amount
            decisions.append(replace(first, status="duplicate" if same else "reused"))
            continue
        state = states[event.counter]
        state.reserved -= event.reserved_amount
        name = event.resource.key
        if passes_plan(event.resource, state, event.amount, limit):
            await allowances.read(name)
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


async def release_expired(
    session: AsyncSession,
    organization_id: str,
    states: Mapping[CounterKey, CounterState],
    now: datetime,
    *,
    sweep: bool,
) -> None:
    """Take the holds expired at `now` out of the `reserved` of the counters that have holds:
    marked expired (one statement per such counter, in key order) with `sweep`, else read
    (one statement) and only subtracted."""
    held = sorted(counter for counter, state in states.items() if state.reserved > 0)
    if not held:
        return
    if sweep:
        for counter in held:
            states[counter].reserved -= await repository.expire_reservations(
                session, organization_id, counter, now
            )
        return
    expired = await repository.expired_holds(session, organization_id, now)
    for counter in held:
        states[counter].reserved -= expired.get(counter, 0)


Writer = Callable[
    [AsyncSession, Organization, Sequence[PreparedEvent], Mapping[str, Limit], datetime],
    Awaitable[Applied],
]
"""Records a prepared group: `apply` below, or `ledger_pg.apply` (the same in one call)."""


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
            replay(
                late[d.idempotency_key],
                limits[d.resource],
                d.idempotency_key,
                d.resource,
                d.requested,
            )
            if d.status == "rejected" and d.idempotency_key in late
            else d
            for d in decisions
        ]
    rows = [_event_row(organization.id, event, decision) for event, decision in chosen]
    if len(await repository.insert_events(session, rows)) != len(rows):
        raise KeyRace()
    await repository.write_counters(
        session, organization.id, {k: s for k, s in states.items() if s != before[k]}
    )
    await repository.write_allowances(session, organization.id, allowances.changed(), now)
    await repository.add_rollups(session, _rollup_rows(organization.id, chosen))
    applied = Applied(decisions)
    for event, _ in chosen:
        applied.record(organization.id, event)
    applied.crossed, applied.capped = await _thresholds(
        session, organization.id, chosen, limits, before, states, now
    )
    return applied


def _event_row(organization_id: str, event: PreparedEvent, decision: Decision) -> dict[str, Any]:
    return {
        "organization_id": organization_id,
        "resource": event.resource.key,
        "idempotency_key": event.idempotency_key,
        "amount": event.amount,
        "period_start": event.period_start,
        "occurred_at": event.occurred_at,
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
        total = totals[(event.resource.key, event.quarter, event.model or "", event.action or "")]
        total[0] += event.amount
        total[1] += event.cost_micros or 0
        total[2] += event.amount if event.cost_micros is None else 0
        total[3] += 1
    return [
        {
            "organization_id": organization_id,
            "resource": name,
            "bucket": quarter,
            "model": model,
            "action": action,
            "amount": amount,
            "cost_micros": cost,
            "unpriced_amount": unpriced,
            "events": count,
        }
        for (name, quarter, model, action), (amount, cost, unpriced, count) in totals.items()
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
    """Thresholds crossed by this batch and recorded for the first time under their key.

    Percents of the limit ("limit" alerts) are crossed event by event: by an accepted event
    that takes its counter from below the threshold to at or above it; the alert carries that
    event's `used` and decision. A metered counter's alert is keyed by its period, a gauge's by
    the crossing instant `now` (a gauge has no period): it fires again once the count has
    fallen below and come back, at most once per threshold in a group. Percents of the spend
    cap ("spend_cap" alerts, on the overage past the limit and the extra allowance; metered
    only) compare the counter before and after the batch, keyed by the period."""
    used = {counter: state.used for counter, state in before.items()}
    last: dict[CounterKey, tuple[Resource, Decision]] = {}
    rows: list[dict[str, Any]] = []
    owners: list[tuple[Resource, Decision]] = []
    crossings: set[tuple[str, datetime, int]] = set()
    for event, decision in chosen:
        resource, counter = event.resource, event.counter
        old, used[counter] = used[counter], decision.used
        last[counter] = (resource, decision)
        limit = limits[resource.key]
        if not limit.value:
            continue
        start = counter[1] if resource.resets else now
        for threshold in limit.thresholds:
            crossing = (resource.key, start, threshold)
            if old * 100 < threshold * limit.value <= decision.used * 100 and (
                crossing not in crossings
            ):
                crossings.add(crossing)
                rows.append(_alert(organization_id, resource.key, start, "limit", threshold,
                                   decision.used, limit.value, now))  # fmt: skip
                owners.append((resource, decision))
    for counter, (resource, decision) in last.items():
        limit = limits[resource.key]
        cap = limit.overage_cap
        if not limit.value or not limit.capped or not cap:
            continue
        spent_before = _overage(before[counter], limit.value)
        spent = _overage(after[counter], limit.value)
        for threshold in SPEND_CAP_THRESHOLDS:
            if spent_before * 100 < threshold * cap <= spent * 100:
                rows.append(_alert(organization_id, resource.key, counter[1], "spend_cap",
                                   threshold, spent, cap, now))  # fmt: skip
                owners.append((resource, decision))
    crossed: list[tuple[Resource, int, Decision]] = []
    capped: list[tuple[Resource, int, Decision]] = []
    for index in await repository.insert_alerts(session, rows):
        resource, decision = owners[index]
        threshold = int(rows[index]["threshold"])
        (capped if rows[index]["kind"] == "spend_cap" else crossed).append(
            (resource, threshold, decision)
        )
    return crossed, capped


def _overage(state: CounterState, limit: int) -> int:
    return max(state.used - limit - state.drawn, 0)


def _alert(
    organization_id: str,
    resource: str,
    start: datetime,
    kind: str,
    threshold: int,
    used: int,
    limit: int,
    now: datetime,
) -> dict[str, Any]:
    """An alert's row; `start` is its key's instant: the period's start, or for a gauge the
    crossing instant."""
    return {
        "organization_id": organization_id,
        "resource": resource,
        "period_start": start,
        "kind": kind,
        "threshold": threshold,
        "used": used,
        "limit_value": limit,
        "crossed_at": now,
    }
