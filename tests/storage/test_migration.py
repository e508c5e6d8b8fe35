"""Migration 0008 moves the raw events of a database at 0007 into the compact layout: the same
counters, every event in the epoch of the month it was recorded in (PostgreSQL: its
partition), its attributes whole when read back, and replays still `duplicate`; the downgrade
moves them back."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from core.clock import FrozenClock
from core.config import Settings
from core.db import driver_url
from core.migrate import alembic_config, upgrade
from core.orgs import Organization
from limits import UsageInput
from limits.event_storage import partition_name
from limits.models import epoch_of
from tally.runtime import build_runtime
from tests.storage.support import month_start, partitions, read
from tests.support import at, usage_events

pytestmark = pytest.mark.anyio

FULL = {"model": "gpt-4o", "action": "chat_reply", "agent_id": "agent-1"}
# (organization, key, amount, recorded at, model and action columns, attributes)
EVENTS = [
    ("org-a", "feb-1", 7, at(2026, 2, 10, 9), "gpt-4o", "chat_reply", FULL),
    ("org-a", "mar-1", 11, at(2026, 3, 2, 23, 59, 59, 999999), "gpt-4o", "chat_reply", FULL),
    ("org-a", "mar-2", 13, at(2026, 3, 31, 23), None, None, {}),
    ("org-b", "mar-1", 17, at(2026, 3, 5), "gpt-4o", None, {"model": "gpt-4o", "action": ""}),
]
PERIOD = at(2026, 3, 1)


def migrate(url: str, revision: str, *, down: bool = False) -> None:
    with alembic_config(url) as config:
        (command.downgrade if down else command.upgrade)(config, revision)


def populate_0007(url: str) -> None:
    """Two organizations, their events in the 0007 layout, counters holding their sums."""
    engine = sa.create_engine(driver_url(url, asynchronous=False))
    try:
        with engine.begin() as connection:
            tables = sa.MetaData()
            tables.reflect(connection, only=["organizations", "usage_events", "usage_counters"])
            connection.execute(
                tables.tables["organizations"].insert(),
                [
                    {"id": name, "name": name, "plan_id": "ecommerce-enterprise",
                     "billing_anchor_day": 1, "is_demo": False, "created_at": at(2026, 1, 1),
                     "currency": "EUR", "locale": "en"}
                    for name in ("org-a", "org-b")
                ],
            )  # fmt: skip
            connection.execute(
                tables.tables["usage_events"].insert(),
                [
                    {"id": f"{index:032x}", "organization_id": organization,
                     "resource": "tokens", "idempotency_key": key, "amount": amount,
                     "period_start": PERIOD, "occurred_at": recorded, "recorded_at": recorded,
                     "used_after": amount, "limit_value": 200_000_000, "model": model,
                     "action": action, "cost_micros": 3, "attributes": attributes}
                    for index, (organization, key, amount, recorded, model, action, attributes)
                    in enumerate(EVENTS)
                ],
            )  # fmt: skip
            sums: dict[str, int] = {}
            for organization, _, amount, *_ in EVENTS:
                sums[organization] = sums.get(organization, 0) + amount
            connection.execute(
                tables.tables["usage_counters"].insert(),
                [
                    {"organization_id": organization, "resource": "tokens",
                     "period_start": PERIOD, "used": used, "reserved": 0, "drawn": 0}
                    for organization, used in sums.items()
                ],
            )  # fmt: skip
    finally:
        engine.dispose()


def counters(url: str) -> list[Any]:
    return read(url, "SELECT organization_id, resource, used FROM usage_counters ORDER BY 1, 2")


async def test_migration_0008_moves_the_events_and_replays_stay_duplicates(
    empty_database_url: str,
) -> None:
    url = empty_database_url
    migrate(url, "0007")
    populate_0007(url)
    before = counters(url)

    upgrade(url)

    refs = dict(read(url, "SELECT organization_id, ref FROM organization_refs"))
    assert set(refs) == {"org-a", "org-b"}
    stored = {
        (row[0], row[1]): row[2:]
        for row in read(
            url,
            "SELECT r.organization_id, e.idempotency_key, e.epoch, e.amount, e.model, e.action "
            "FROM usage_events AS e JOIN organization_refs AS r ON r.ref = e.organization_ref",
        )
    }
    assert stored == {
        (organization, key): (epoch_of(recorded), amount, model, action)
        for organization, key, amount, recorded, model, action, _ in EVENTS
    }
    now = epoch_of(month_start(0))
    epochs = [row[0] for row in read(url, "SELECT epoch FROM usage_event_epochs ORDER BY 1")]
    assert epochs == sorted({epoch_of(at(2026, 2, 1)), epoch_of(at(2026, 3, 1)), now})
    if url.startswith("postgresql"):
        assert partitions(url) == {partition_name(epoch) for epoch in epochs}

    runtime = build_runtime(Settings(database_url=url), FrozenClock(at(2026, 3, 20)))
    try:
        async with runtime.db.read() as session:
            rows = {
                (organization_id, event.idempotency_key): event
                for organization_id in ("org-a", "org-b")
                for event in await usage_events(session, organization_id)
            }
            org_a = await session.get(Organization, "org-a")
        assert {key: row.all_attributes() for key, row in rows.items()} == {
            (organization, key): attributes for organization, key, *_, attributes in EVENTS
        }
        assert {key: row.attributes for key, row in rows.items()} == {
            ("org-a", "feb-1"): {"agent_id": "agent-1"},
            ("org-a", "mar-1"): {"agent_id": "agent-1"},
            ("org-a", "mar-2"): None,
            ("org-b", "mar-1"): {"action": ""},  # "" is no action: kept as given
        }
        assert org_a is not None
        replays = [
            UsageInput("tokens", amount, key, None, attributes)
            for name, key, amount, *_, attributes in EVENTS
            if name == "org-a"
        ]
        decisions = await runtime.usage.record(org_a, [*replays, UsageInput("tokens", 1, "new")])
    finally:
        await runtime.db.dispose()
    assert [(d.status, d.used) for d in decisions] == [
        ("duplicate", 7), ("duplicate", 11), ("duplicate", 13), ("accepted", 32)
    ]  # fmt: skip
    after = [(name, resource, used + (name == "org-a")) for name, resource, used in before]
    assert counters(url) == after

    migrate(url, "0007", down=True)
    moved = read(url, "SELECT id, organization_id, idempotency_key, attributes FROM usage_events")
    assert all(len(row[0]) == 32 for row in moved)
    assert {(row[1], row[2]): _json(row[3]) for row in moved} == {
        **{(organization, key): attributes for organization, key, *_, attributes in EVENTS},
        ("org-a", "new"): {},
    }
    assert counters(url) == after


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
