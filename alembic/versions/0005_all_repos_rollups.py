"""Rollups of the tier and pool views over all repos, refreshed with them.

Measured at 1,000,000 rows before it (bench/RESULTS.md): a 30-day tier window over all
repos summed 14,714 per-repo buckets (9.61 ms p50) and a 7-day pool window 12,962
(10.5 ms). The rollups hold a few hundred buckets for the same windows.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from orb_learning import _routines as routines, _views as views

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLLUPS = views.ROLLUPS  # per-repo view name -> its rollup
_COPY_WATERMARK = sa.text(
    "INSERT INTO view_watermarks (view_name, watermark) "
    "SELECT :rollup, watermark FROM view_watermarks WHERE view_name = :source"
)


def upgrade() -> None:
    for source, rollup in ROLLUPS.items():
        # Built from its source as it stands, so it holds what the source holds.
        op.get_bind().execute(_COPY_WATERMARK, {"rollup": rollup.name, "source": source})
        for statement in rollup.create_statements():
            op.execute(statement)
    op.execute(routines.REFRESH_VIEWS_V2)
    op.execute(routines.REFRESH_VIEWS_V2_COMMENT)


def downgrade() -> None:
    op.execute(
        routines.REFRESH_VIEWS_V1.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
    )
    op.execute(routines.REFRESH_VIEWS_V1_COMMENT)
    names = [rollup.name for rollup in ROLLUPS.values()]
    for rollup in ROLLUPS.values():
        op.execute(rollup.drop_statement())
    for table in ("view_watermarks", "view_refresh_log"):
        op.get_bind().execute(
            sa.text(f"DELETE FROM {table} WHERE view_name = ANY(:names)"), {"names": names}
        )
