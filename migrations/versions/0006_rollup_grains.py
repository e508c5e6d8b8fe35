"""rollup grains: usage rollups per quarter hour, hour and UTC day, and their totals

`usage_rollups` is keyed by (organization, resource, grain, bucket, model, action): `grain` in
minutes (15, 60, 1440), `bucket` the UTC start of the grain-aligned interval (aligned from the
Unix epoch) holding the events; `usage_rollup_totals` is the same summed over models and
actions. Both are rebuilt exactly from `usage_events` (every accepted event is kept there);
the hourly layout they replace is dropped. The downgrade restores it from grain 60.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import core.db

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SUMS = (
    "sum(amount), sum(coalesce(cost_micros, 0)), "
    "sum(CASE WHEN cost_micros IS NULL THEN amount ELSE 0 END), count(*)"
)
_GRAINS = "(SELECT 15 AS grain UNION ALL SELECT 60 UNION ALL SELECT 1440) AS grains"
_BUCKET = {
    "postgresql": "date_bin(make_interval(mins => grains.grain), occurred_at, "
    "TIMESTAMPTZ '1970-01-01 00:00:00+00')",
    # SQLite keeps UTC timestamps as text in SQLAlchemy's format, microseconds included;
    # they are cut before parsing, which would round them to the millisecond.
    "sqlite": "strftime('%Y-%m-%d %H:%M:%S', "
    "CAST(strftime('%s', substr(occurred_at, 1, 19)) AS INTEGER) "
    "/ (grains.grain * 60) * (grains.grain * 60), 'unixepoch') || '.000000'",
}


def _amounts() -> list[sa.Column[int]]:
    return [
        sa.Column(name, sa.BigInteger(), nullable=False)
        for name in ('amount', 'cost_micros', 'unpriced_amount', 'events')
    ]


def upgrade() -> None:
    op.drop_table('usage_rollups')
    op.create_table('usage_rollups',
    sa.Column('organization_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('resource', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('grain', sa.SmallInteger(), nullable=False),
    sa.Column('bucket', core.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('model', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    *_amounts(),
    sa.PrimaryKeyConstraint('organization_id', 'resource', 'grain', 'bucket', 'model', 'action')
    )
    op.create_table('usage_rollup_totals',
    sa.Column('organization_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('resource', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('grain', sa.SmallInteger(), nullable=False),
    sa.Column('bucket', core.db.UtcDateTime(timezone=True), nullable=False),
    *_amounts(),
    sa.PrimaryKeyConstraint('organization_id', 'resource', 'grain', 'bucket')
    )
    bucket = _BUCKET[op.get_bind().dialect.name]
    op.execute(
        "INSERT INTO usage_rollups (organization_id, resource, grain, bucket, model, action, "
        "amount, cost_micros, unpriced_amount, events) "
        f"SELECT organization_id, resource, grains.grain, {bucket}, coalesce(model, ''), "
        f"coalesce(action, ''), {_SUMS} FROM usage_events CROSS JOIN {_GRAINS} "
        f"GROUP BY organization_id, resource, grains.grain, {bucket}, coalesce(model, ''), "
        "coalesce(action, '')"
    )
    op.execute(
        "INSERT INTO usage_rollup_totals (organization_id, resource, grain, bucket, amount, "
        "cost_micros, unpriced_amount, events) "
        "SELECT organization_id, resource, grain, bucket, sum(amount), sum(cost_micros), "
        "sum(unpriced_amount), sum(events) FROM usage_rollups "
        "GROUP BY organization_id, resource, grain, bucket"
    )


def downgrade() -> None:
    op.execute(
        "CREATE TABLE usage_rollups_hourly AS SELECT organization_id, resource, bucket AS hour, "
        "model, action, amount, cost_micros, unpriced_amount, events FROM usage_rollups "
        "WHERE grain = 60"
    )
    op.drop_table('usage_rollup_totals')
    op.drop_table('usage_rollups')
    op.create_table('usage_rollups',
    sa.Column('organization_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('resource', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('hour', core.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('model', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    *_amounts(),
    sa.PrimaryKeyConstraint('organization_id', 'resource', 'hour', 'model', 'action')
    )
    op.execute("INSERT INTO usage_rollups SELECT * FROM usage_rollups_hourly")
    op.drop_table('usage_rollups_hourly')
