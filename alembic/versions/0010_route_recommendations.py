"""The learning loop's log: what ``recommend_route`` recommended, and what followed.

1. ``route_recommendations``: one row per ``recommend_route(..., log=True)`` (the task and
   its filters, the objective, every option with its estimates, the chosen one).
2. ``executions.recommendation_id`` (NULL for executions stored without a recommendation;
   no foreign key, so an execution may arrive before its recommendation is written, or
   after retention dropped it) and a partial index on it.
3. The view ``route_recommendation_outcomes``: each recommendation with the executions that
   carried its id (executed, followed, success, cost), see :mod:`orb_learning._route_log`.

Both new objects are only added to: the downgrade drops them (and the recommendations with
them).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from orb_learning import _route_log as route_log

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "executions",
        sa.Column(
            "recommendation_id",
            sa.Uuid(),
            nullable=True,
            comment="The route recommendation the router asked for first "
            "(route_recommendations), NULL when none",
        ),
    )
    op.create_index(
        "idx_executions_recommendation_id",
        "executions",
        ["recommendation_id"],
        postgresql_where=sa.text("recommendation_id IS NOT NULL"),
    )
    op.create_table(
        "route_recommendations",
        sa.Column("recommendation_id", sa.Uuid(), nullable=False, comment="Returned to the caller"),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
            comment="When it was made",
        ),
        sa.Column(
            "task_description", sa.Text(), nullable=False, comment="The task (secrets redacted)"
        ),
        sa.Column("task_type", sa.Text(), comment="The task type asked with, NULL when none"),
        sa.Column("repo", sa.Text(), comment="The repo filter, NULL for all repos"),
        sa.Column(
            "complexity_score", sa.Integer(), comment="The router's complexity estimate, if given"
        ),
        sa.Column(
            "days_back", sa.Integer(), comment="The history window in days, NULL for all history"
        ),
        sa.Column(
            "objective",
            sa.Text(),
            nullable=False,
            comment="success (most likely), min_success (cheapest likely enough) or cost_weight",
        ),
        sa.Column("min_success", sa.Double(), comment="The min_success asked for"),
        sa.Column(
            "cost_weight", sa.Double(), comment="The cost weight (success per USD) asked for"
        ),
        sa.Column("explore", sa.Boolean(), nullable=False, comment="Chosen by Thompson sampling"),
        sa.Column(
            "fallback",
            sa.Boolean(),
            nullable=False,
            comment="No history: the caller's first option",
        ),
        sa.Column("chosen_tier", sa.Text(), comment="The model tier recommended"),
        sa.Column("chosen_pool", sa.Text(), comment="The pool recommended"),
        sa.Column("expected_success", sa.Double(), comment="The chosen option's expected success"),
        sa.Column("expected_cost", sa.Double(), comment="The chosen option's expected cost, USD"),
        sa.Column(
            "options",
            postgresql.JSONB(),
            nullable=False,
            comment="Every option with its estimates and score, ranked",
        ),
        sa.CheckConstraint(
            "objective IN ('success', 'min_success', 'cost_weight')",
            name=op.f("ck_route_recommendations_objective_known"),
        ),
        sa.PrimaryKeyConstraint("recommendation_id", name=op.f("pk_route_recommendations")),
        comment="One row per recommend_route() call (log=True): what was recommended, with "
        "what estimates. route_recommendation_outcomes joins it with the executions that "
        "followed.",
    )
    op.create_index("idx_route_recommendations_created_at", "route_recommendations", ["created_at"])
    op.execute(route_log.OUTCOMES_V1)
    op.execute(route_log.OUTCOMES_V1_COMMENT)


def downgrade() -> None:
    op.execute(route_log.DROP_OUTCOMES_V1)
    op.drop_index("idx_route_recommendations_created_at", table_name="route_recommendations")
    op.drop_table("route_recommendations")
    op.drop_index("idx_executions_recommendation_id", table_name="executions")
    op.drop_column("executions", "recommendation_id")
