"""Sealed history: each analytics view split into a history part, refreshed about once a
day, and a recent part, refreshed every time; the names users read become plain views.

Measured at 1,000,000 rows before it (bench/history/): a refresh recomputed every view from
the whole table, 12-15 s, most of it REFRESH CONCURRENTLY's diff of the 375K-row hourly pool
view. See :mod:`orb_learning._sealed` for the design and bench/ANALYTICS.md for the figures.

The parts are filled here (WITH DATA) up to the watermarks the old views had, so answers
do not change across the upgrade. Roles granted before it need ``orb-learning roles
grant-reader``/``grant-writer`` again (new objects: the parts, the plain views).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from orb_learning import (
    _history_marks as history_marks,
    _routines as routines,
    _sealed as sealed,
    _views as views,
)

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_VIEWS = views.VIEWS_0006  # each rollup after its source
NEW_VIEWS = sealed.SEALED_VIEWS  # same names, now plain views over two parts each
OLD_TIME_INDEXES = {  # revision 0004's, on the old views
    "idx_tier_performance_mv_date": ("tier_performance_mv", "date"),
    "idx_pool_performance_mv_hour": ("pool_performance_mv", "hour"),
}
SEAL = (
    f"least(date_trunc('day', now() - {routines.SEAL_LAG}, 'UTC'), date_trunc('day', {{}}, 'UTC'))"
)


def _names(names: Sequence[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)  # constants of this package only


def upgrade() -> None:
    op.execute(history_marks.CREATE_HISTORY_DIRTY)
    for comment in history_marks.HISTORY_DIRTY_COMMENTS:
        op.execute(comment)
    for view in NEW_VIEWS:
        # The recent part keeps the old view's watermark (same live tail); the seal is at
        # most two days back, and never past it.
        op.execute(
            "INSERT INTO view_watermarks (view_name, watermark) "
            f"SELECT '{view.recent.name}', watermark FROM view_watermarks "
            f"WHERE view_name = '{view.name}' "
            f"UNION ALL SELECT '{view.history.name}', {SEAL.format('watermark')} "
            f"FROM view_watermarks WHERE view_name = '{view.name}'"
        )
    for old in reversed(OLD_VIEWS):
        op.execute(old.drop_statement())  # its time index goes with it
    kept = {part.name for view in NEW_VIEWS for part in view.materialized}
    gone = [v.name for v in OLD_VIEWS if v.name not in kept]  # solution_patterns_mv stays one
    op.execute(f"DELETE FROM view_watermarks WHERE view_name IN ({_names(gone)})")
    for view in NEW_VIEWS:
        for part in view.parts:
            for statement in part.create_statements():
                op.execute(statement)
        for statement in view.create_statements():
            op.execute(statement)
    op.execute(history_marks.MARK_HISTORY_DIRTY_V1)
    op.execute(history_marks.MARK_HISTORY_DIRTY_V1_COMMENT)
    for trigger in history_marks.HISTORY_TRIGGERS_V1:
        op.execute(trigger)
    op.execute(routines.REFRESH_VIEWS_V3)
    op.execute(routines.REFRESH_VIEWS_V3_COMMENT)


def downgrade() -> None:
    op.execute(routines.REFRESH_VIEWS_V2)
    op.execute(routines.REFRESH_VIEWS_V2_COMMENT)
    for trigger in history_marks.DROP_HISTORY_TRIGGERS_V1:
        op.execute(trigger)
    op.execute(history_marks.DROP_MARK_HISTORY_DIRTY_V1)
    for view in reversed(NEW_VIEWS):
        op.execute(view.drop_statement())
        for part in reversed(view.parts):
            op.execute(part.drop_statement())
    for view in NEW_VIEWS:
        # The old view holds what both parts held: up to the recent part's watermark.
        op.execute(
            "INSERT INTO view_watermarks (view_name, watermark) "
            f"SELECT '{view.name}', watermark FROM view_watermarks "
            f"WHERE view_name = '{view.recent.name}' "
            "ON CONFLICT (view_name) DO UPDATE SET watermark = excluded.watermark"
        )
    parts = [part.name for view in NEW_VIEWS for part in view.parts]
    for table in ("view_watermarks", "view_refresh_log"):
        op.execute(f"DELETE FROM {table} WHERE view_name IN ({_names(parts)})")
    for old in OLD_VIEWS:
        for statement in old.create_statements():
            op.execute(statement)
    for name, (view, column) in OLD_TIME_INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON {view} ({column})")
    op.execute(f"DROP TABLE IF EXISTS {history_marks.HISTORY_DIRTY_TABLE}")
