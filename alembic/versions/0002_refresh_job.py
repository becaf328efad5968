"""The refresh job: watermarks, the refresh log, orb_learning_refresh_views(), and views
that materialize only the executions before their watermark (for real-time aggregates).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from orb_learning import _routines as routines, _views as views

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_VIEWS = (views.TIER_PERFORMANCE_V1, views.POOL_PERFORMANCE_V1, views.SOLUTION_PATTERNS_V1)
NEW_VIEWS = (views.TIER_PERFORMANCE_V2, views.POOL_PERFORMANCE_V2, views.SOLUTION_PATTERNS_V2)


def upgrade() -> None:
    op.create_table(
        "view_watermarks",
        sa.Column(
            "view_name", sa.Text(), nullable=False, comment="A materialized view of orb-learning"
        ),
        sa.Column(
            "watermark",
            sa.DateTime(timezone=True),
            server_default=sa.text("'-infinity'"),
            nullable=False,
            comment="The view holds the executions before this instant; analytics with "
            "fresh=True add the rows from it on, live",
        ),
        sa.PrimaryKeyConstraint("view_name", name=op.f("pk_view_watermarks")),
        comment="Per analytics view, the instant up to which it is materialized "
        "(moved by orb_learning_refresh_views()).",
    )
    op.create_table(
        "view_refresh_log",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("view_name", sa.Text(), nullable=False, comment="The view refreshed"),
        sa.Column(
            "started_at", sa.DateTime(timezone=True), nullable=False, comment="Refresh start"
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True, comment="Refresh end"),
        sa.Column(
            "rows", sa.BigInteger(), nullable=True, comment="Rows in the view after the refresh"
        ),
        sa.Column("status", sa.Text(), nullable=False, comment="success or failed"),
        sa.Column(
            "error", sa.Text(), nullable=True, comment="SQLSTATE and message of a failed refresh"
        ),
        sa.Column(
            "watermark",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="The view's watermark after this refresh",
        ),
        sa.CheckConstraint(
            "status IN ('success', 'failed')", name=op.f("ck_view_refresh_log_status_known")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_view_refresh_log")),
        comment="One row per refresh of an analytics view, successful or not "
        "(written by orb_learning_refresh_views() and by the refresher on failures).",
    )
    op.create_index(
        "idx_view_refresh_log_view_finished",
        "view_refresh_log",
        ["view_name", sa.literal_column("finished_at DESC")],
    )
    for view in reversed(OLD_VIEWS):
        op.execute(view.drop_statement())
    op.bulk_insert(
        sa.table("view_watermarks", sa.column("view_name", sa.Text())),
        [{"view_name": view.name} for view in NEW_VIEWS],
    )
    for view in NEW_VIEWS:
        for statement in view.create_statements():
            op.execute(statement)
    op.execute(routines.REFRESH_VIEWS_V1)
    op.execute(routines.REFRESH_VIEWS_V1_COMMENT)


def downgrade() -> None:
    op.execute(routines.DROP_REFRESH_VIEWS_V1)
    for view in reversed(NEW_VIEWS):
        op.execute(view.drop_statement())
    for view in OLD_VIEWS:
        for statement in view.create_statements():
            op.execute(statement)
    op.drop_index("idx_view_refresh_log_view_finished", table_name="view_refresh_log")
    op.drop_table("view_refresh_log")
    op.drop_table("view_watermarks")
