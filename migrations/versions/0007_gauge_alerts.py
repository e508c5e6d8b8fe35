"""gauge alerts: keyed by the instant they crossed, not by a placeholder period

A gauge has no period: its alerts were kept under `GAUGE_EPOCH` (1970-01-01), so a threshold
fired once ever. Now each crossing is its own row, keyed by its instant; the existing ones move
to their `crossed_at`. Data only: the table keeps its columns and key.

The downgrade leaves the rows where they are: an earlier version lists alerts by period start
and would no longer show these, which loses nothing stored.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import core.db

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GAUGE_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

alerts = sa.table(
    "usage_alerts",
    sa.column("period_start", core.db.UtcDateTime()),
    sa.column("crossed_at", core.db.UtcDateTime()),
)


def upgrade() -> None:
    op.execute(
        alerts.update()
        .where(alerts.c.period_start == sa.bindparam("epoch", GAUGE_EPOCH, core.db.UtcDateTime()))
        .values(period_start=alerts.c.crossed_at)
    )


def downgrade() -> None:
    pass
