"""The ledger on PostgreSQL: a group decided and recorded by one call of `tally_apply_usage`.

The function (`migrations/functions/tally_apply_usage.sql`, installed by every `tally
migrate`) does what `limits.ledger.apply` does, in the same order and with the same rules;
`ledger.py` stays the reference, and a property test feeds the same random sequences to both
and requires the same decisions, counters and alerts. Here the group is turned into arrays
(events in order, and each resource's limit), and the rows the function returns back into
decisions: one round trip, so the counters stay locked only while PostgreSQL runs it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from core.orgs import Organization
from limits import repository
from limits.ledger import SPEND_CAP_THRESHOLDS, Applied, KeyRace
from limits.models import UsageEventRow
from limits.resource import Limit
from limits.types import Decision, PreparedEvent, Status

if SPEND_CAP_THRESHOLDS != (80, 100):  # pragma: no cover - the function's own constant
    raise RuntimeError("tally_apply_usage raises spend-cap alerts at 80 and 100 %")


COPY = "copy:"
"""Prefixes the function's status of a key repeated in its group after being accepted."""


def group_arrays(
    organization_id: str,
    events: Sequence[PreparedEvent],
    limits: Mapping[str, Limit],
    now: datetime,
) -> dict[str, Any]:
    """The function's parameters: one array per event field, one per limit field."""
    resources = {event.resource.key: event.resource for event in events}
    names = sorted(resources)
    chosen = [limits[name] for name in names]
    return {
        "organization_id": organization_id,
        "now": now,
        "e_resource": [event.resource.key for event in events],
        "e_key": [event.idempotency_key for event in events],
        "e_amount": [event.amount for event in events],
        "e_period": [event.period_start for event in events],
        "e_occurred": [event.occurred_at for event in events],
        "e_model": [event.model for event in events],
        "e_action": [event.action for event in events],
        "e_cost": [event.cost_micros for event in events],
        "e_attributes": [_stored_attributes(event) for event in events],
        "e_reserved": [event.reserved_amount for event in events],
        "l_resource": names,
        "l_limit": [limit.value for limit in chosen],
        "l_ceiling": [limit.ceiling() for limit in chosen],
        "l_resets": [resources[name].resets for name in names],
        "l_thresholds": [_array_literal(limit.thresholds) for limit in chosen],
        "l_cap": [limit.overage_cap if limit.capped else None for limit in chosen],
    }


def _stored_attributes(event: PreparedEvent) -> str | None:
    """The attributes the event's row keeps (`UsageEventRow.stored_attributes`), as JSON."""
    kept = UsageEventRow.stored_attributes(event.attributes, event.model, event.action)
    return None if kept is None else orjson.dumps(kept).decode()


def _array_literal(values: Sequence[int]) -> str:
    return "{" + ",".join(str(value) for value in values) + "}"


Group = tuple[Organization, Sequence[PreparedEvent], Mapping[str, Limit]]
"""One organization's prepared events, in order, and the limits of their resources."""


async def apply(
    session: AsyncSession,
    organization: Organization,
    events: Sequence[PreparedEvent],
    limits: Mapping[str, Limit],
    now: datetime,
) -> Applied:
    """`ledger.apply` in one round trip; raises KeyRace (then retry) like it."""
    return (await apply_groups(session, [(organization, events, limits)], now))[0]


async def apply_groups(
    session: AsyncSession, groups: Sequence[Group], now: datetime
) -> list[Applied]:
    """Several organizations' groups in one statement (one round trip, one commit), each
    decided as `apply` decides it. The groups must come in organization id order, the order in
    which every multi-organization statement locks counters, so that two never deadlock.
    Raises KeyRace (retry them all) when any group met one."""
    parameters = [
        group_arrays(organization.id, events, limits, now)
        for organization, events, limits in groups
    ]
    try:
        results = await repository.apply_usage_groups(session, parameters)
    except repository.GroupKeyRace:
        raise KeyRace() from None
    return [
        _applied(organization, events, limits, rows)
        for (organization, events, limits), rows in zip(groups, results, strict=True)
    ]


def _applied(
    organization: Organization,
    events: Sequence[PreparedEvent],
    limits: Mapping[str, Limit],
    rows: Sequence[Any],
) -> Applied:
    """The function's rows of one group as decisions, and what observers are owed."""
    decisions: list[Decision] = []
    alerts: list[tuple[str, str, int, int]] = []
    for ordinal, status, name, amount, used, limit, reserved, extra in rows:
        if ordinal is None:
            # An alert row: its kind, resource, threshold and the ordinal of the event that
            # crossed it (in the `used` column).
            alerts.append((str(status).removeprefix("alert:"), name, int(amount), int(used)))
            continue
        event = events[ordinal - 1]
        # A copy repeats the group's earlier decision on the same key, policy included; a
        # replay of a recorded event answers with the policy of the event's resource.
        copy = str(status).startswith(COPY)
        policy = limits[name if copy else event.resource.key].policy
        decisions.append(
            Decision(
                name,
                cast(Status, str(status).removeprefix(COPY)),
                int(amount),
                int(used),
                None if limit is None else int(limit),
                policy,
                event.idempotency_key,
                int(reserved),
                int(extra),
            )
        )
    applied = Applied(decisions)
    for event, decision in zip(events, decisions, strict=True):
        if decision.status == "accepted":
            applied.record(organization.id, event)
    for kind, _, threshold, owner in alerts:
        crossed = (events[owner - 1].resource, threshold, decisions[owner - 1])
        (applied.capped if kind == "spend_cap" else applied.crossed).append(crossed)
    return applied
