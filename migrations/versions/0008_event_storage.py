"""event storage: compact raw usage events, partitioned by epoch (PostgreSQL), with retention

`usage_events` loses its 32-character `id` and `organization_id`: an organization is named by
`organization_refs.ref` (a small integer given when it opens), the table's key is
(organization_ref, idempotency_key, epoch) and its only index, `ix_usage_events_time` is gone
(statistics read the rollups; the GDPR export pages by key), `recorded_at` is gone (the epoch
is its month), `period_start` is a date (periods start at 00:00 UTC), and `attributes` keeps
only what the `model` and `action` columns do not (NULL when nothing is left). Events belong to
an epoch (`usage_event_epochs`: a month of recording, counted from January 1970); on
PostgreSQL the table is partitioned by epoch (LIST), one partition per epoch in the schema
`usage_event_partitions`, so that retention drops whole partitions.

The data moves: every organization (and any organization id found in the events) gets a ref,
every event lands in the epoch of the month it was recorded in, the current month's epoch is
the one written to next. The table is rewritten once, in the migration's transaction. The
downgrade moves the events back (new ids, the attributes merged again, `recorded_at` taken
from `occurred_at`).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
import sqlmodel
from alembic import op

import core.db

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PARTITION_SCHEMA = "usage_event_partitions"
OLD_TABLE = "usage_events_0007"
NEW_TABLE = "usage_events_0008"

_NEW_COLUMNS = (
    "amount, used_after, limit_value, cost_micros, occurred_at, organization_ref, period_start, "
    "epoch, resource, idempotency_key, model, action, attributes"
)
_OLD_COLUMNS = (
    "id, organization_id, resource, idempotency_key, amount, period_start, occurred_at, "
    "recorded_at, used_after, limit_value, model, action, cost_micros, attributes"
)
_EPOCH = {
    "postgresql": "((extract(year FROM {t} AT TIME ZONE 'UTC')::integer - 1970) * 12 "
    "+ extract(month FROM {t} AT TIME ZONE 'UTC')::integer - 1)",
    # SQLite keeps UTC timestamps as text, 'YYYY-MM-DD HH:MM:SS.ffffff'.
    "sqlite": "((CAST(substr({t}, 1, 4) AS INTEGER) - 1970) * 12 "
    "+ CAST(substr({t}, 6, 2) AS INTEGER) - 1)",
}
_WITHOUT_MODEL = (
    "CASE WHEN json_extract(e.attributes, '$.model') = e.model "
    "THEN json_remove(e.attributes, '$.model') ELSE json(e.attributes) END"
)
_STORED_ATTRIBUTES = {
    "postgresql": "CAST(nullif(CAST(e.attributes AS jsonb) - array_remove(ARRAY["
    "CASE WHEN e.attributes ->> 'model' = e.model THEN 'model' END, "
    "CASE WHEN e.attributes ->> 'action' = e.action THEN 'action' END], NULL), "
    "'{}'::jsonb) AS json)",
    "sqlite": f"nullif(CASE WHEN json_extract({_WITHOUT_MODEL}, '$.action') = e.action "
    f"THEN json_remove({_WITHOUT_MODEL}, '$.action') ELSE {_WITHOUT_MODEL} END, '{{}}')",
}
_ALL_ATTRIBUTES = {
    "postgresql": "CAST(coalesce(CAST(e.attributes AS jsonb), '{}'::jsonb) "
    "|| jsonb_strip_nulls(jsonb_build_object('model', e.model, 'action', e.action)) AS json)",
    "sqlite": "json_patch(json_patch(coalesce(e.attributes, '{}'), "
    "CASE WHEN e.model IS NULL THEN '{}' ELSE json_object('model', e.model) END), "
    "CASE WHEN e.action IS NULL THEN '{}' ELSE json_object('action', e.action) END)",
}
_DAY = {
    "postgresql": "CAST(e.period_start AT TIME ZONE 'UTC' AS date)",
    "sqlite": "substr(e.period_start, 1, 10)",
}
_INSTANT = {
    "postgresql": "CAST(e.period_start AS timestamp) AT TIME ZONE 'UTC'",
    "sqlite": "e.period_start || ' 00:00:00.000000'",
}
_NEW_ID = {
    "postgresql": "replace(CAST(gen_random_uuid() AS text), '-', '')",
    "sqlite": "lower(hex(randomblob(16)))",
}


def partition_name(epoch: int) -> str:
    """`usage_events_2026_03` for the epoch of March 2026."""
    return f"usage_events_{1970 + epoch // 12:04d}_{epoch % 12 + 1:02d}"


def epoch_start(epoch: int) -> datetime:
    return datetime(1970 + epoch // 12, epoch % 12 + 1, 1, tzinfo=UTC)


def _new_events_table(name: str, postgresql: bool) -> None:
    op.create_table(
        name,
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("used_after", sa.BigInteger(), nullable=False),
        sa.Column("limit_value", sa.BigInteger(), nullable=True),
        sa.Column("cost_micros", sa.BigInteger(), nullable=True),
        sa.Column("occurred_at", core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("organization_ref", sa.Integer(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("epoch", sa.SmallInteger(), nullable=False),
        sa.Column("resource", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("model", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("attributes", sa.JSON(none_as_null=True), nullable=True),
        sa.PrimaryKeyConstraint(
            "organization_ref", "idempotency_key", "epoch", name="pk_usage_events"
        ),
        **({"postgresql_partition_by": "LIST (epoch)"} if postgresql else {}),
    )


def upgrade() -> None:
    bind = op.get_bind()
    dialect = bind.dialect.name
    postgresql = dialect == "postgresql"
    op.create_table(
        "organization_refs",
        sa.Column("ref", sa.Integer(), nullable=False),
        sa.Column("organization_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.PrimaryKeyConstraint("ref"),
        sa.UniqueConstraint("organization_id"),
    )
    op.execute(
        "INSERT INTO organization_refs (organization_id) "
        "SELECT id FROM organizations ORDER BY created_at, id"
    )
    op.execute(
        "INSERT INTO organization_refs (organization_id) SELECT DISTINCT organization_id "
        "FROM usage_events WHERE organization_id NOT IN "
        "(SELECT organization_id FROM organization_refs) ORDER BY organization_id"
    )
    epochs = op.create_table(
        "usage_event_epochs",
        sa.Column("epoch", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("started_at", core.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("epoch"),
    )
    recorded = _EPOCH[dialect].format(t="recorded_at")
    query = sa.text(f"SELECT DISTINCT {recorded} FROM usage_events")
    found = {int(row[0]) for row in bind.execute(query)}
    now = datetime.now(UTC)
    chosen = sorted(found | {(now.year - 1970) * 12 + now.month - 1})
    op.bulk_insert(epochs, [{"epoch": e, "started_at": epoch_start(e)} for e in chosen])

    op.rename_table("usage_events", OLD_TABLE)
    _new_events_table("usage_events", postgresql)
    if postgresql:
        op.execute(f"CREATE SCHEMA {PARTITION_SCHEMA}")
        for epoch in chosen:
            op.execute(
                f"CREATE TABLE {PARTITION_SCHEMA}.{partition_name(epoch)} "
                f"PARTITION OF usage_events FOR VALUES IN ({epoch})"
            )
    op.execute(
        f"INSERT INTO usage_events ({_NEW_COLUMNS}) "
        "SELECT e.amount, e.used_after, e.limit_value, e.cost_micros, e.occurred_at, r.ref, "
        f"{_DAY[dialect]}, {_EPOCH[dialect].format(t='e.recorded_at')}, e.resource, "
        f"e.idempotency_key, e.model, e.action, {_STORED_ATTRIBUTES[dialect]} "
        f"FROM {OLD_TABLE} AS e JOIN organization_refs AS r "
        "ON r.organization_id = e.organization_id"
    )
    op.drop_table(OLD_TABLE)


def downgrade() -> None:
    bind = op.get_bind()
    dialect = bind.dialect.name
    op.rename_table("usage_events", NEW_TABLE)
    op.create_table(
        "usage_events",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("organization_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("resource", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("period_start", core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("occurred_at", core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("used_after", sa.BigInteger(), nullable=False),
        sa.Column("limit_value", sa.BigInteger(), nullable=True),
        sa.Column("model", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("cost_micros", sa.BigInteger(), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_usage_events_time", ["organization_id", "resource", "occurred_at"], unique=False
        )
        batch_op.create_index(
            "ux_usage_events_idempotency", ["organization_id", "idempotency_key"], unique=True
        )
    op.execute(
        f"INSERT INTO usage_events ({_OLD_COLUMNS}) "
        f"SELECT {_NEW_ID[dialect]}, r.organization_id, e.resource, e.idempotency_key, "
        f"e.amount, {_INSTANT[dialect]}, e.occurred_at, e.occurred_at, e.used_after, "
        f"e.limit_value, e.model, e.action, e.cost_micros, {_ALL_ATTRIBUTES[dialect]} "
        f"FROM {NEW_TABLE} AS e JOIN organization_refs AS r ON r.ref = e.organization_ref"
    )
    op.drop_table(NEW_TABLE)
    if dialect == "postgresql":
        op.execute(f"DROP SCHEMA {PARTITION_SCHEMA} CASCADE")
    op.drop_table("usage_event_epochs")
    op.drop_table("organization_refs")
