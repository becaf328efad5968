"""The executions table, its indexes (HNSW included) and the three analytics views.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import VECTOR
from sqlalchemy.dialects import postgresql

from orb_learning._views import POOL_PERFORMANCE_V1, SOLUTION_PATTERNS_V1, TIER_PERFORMANCE_V1

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEWS = (TIER_PERFORMANCE_V1, POOL_PERFORMANCE_V1, SOLUTION_PATTERNS_V1)


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.create_table(
        "executions",
        sa.Column(
            "task_id", sa.Uuid(), nullable=False, comment="Task identifier (UUID), the upsert key"
        ),
        sa.Column(
            "timestamp",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="When the task ran (timestamptz, UTC in the API)",
        ),
        sa.Column(
            "task_type",
            sa.Text(),
            nullable=False,
            comment="Kind of task: refactor, test, review...",
        ),
        sa.Column(
            "task_description", sa.Text(), nullable=False, comment="The task in natural language"
        ),
        sa.Column(
            "repo", sa.Text(), nullable=False, comment="Repository: the isolation key of learning"
        ),
        sa.Column(
            "file_count", sa.Integer(), server_default="0", nullable=False, comment="Files touched"
        ),
        sa.Column(
            "estimated_tokens",
            sa.Integer(),
            server_default="0",
            nullable=False,
            comment="Tokens the router expected the task to take",
        ),
        sa.Column("model_tier", sa.Text(), nullable=False, comment="Model tier the router chose"),
        sa.Column("pool_type", sa.Text(), nullable=False, comment="Worker pool that ran the task"),
        sa.Column(
            "swarm_topology",
            sa.Text(),
            nullable=True,
            comment="Swarm topology (star, mesh...), NULL when none",
        ),
        sa.Column(
            "routing_confidence",
            sa.Double(),
            nullable=False,
            comment="Router confidence in its decision, 0.0-1.0",
        ),
        sa.Column(
            "complexity_score",
            sa.Integer(),
            server_default="50",
            nullable=False,
            comment="Router's complexity estimate, 0-100",
        ),
        sa.Column("success", sa.Boolean(), nullable=False, comment="Whether the task succeeded"),
        sa.Column(
            "duration_seconds", sa.Double(), nullable=False, comment="Wall-clock duration, seconds"
        ),
        sa.Column(
            "quality_score",
            sa.Integer(),
            nullable=True,
            comment="Quality-gate score 0-100, NULL when not measured",
        ),
        sa.Column(
            "cost_estimate", sa.Double(), nullable=False, comment="Cost the router predicted, USD"
        ),
        sa.Column(
            "actual_cost", sa.Double(), nullable=False, comment="Cost actually incurred, USD"
        ),
        sa.Column(
            "error_type",
            sa.Text(),
            nullable=True,
            comment="timeout, quality_gate, crash, validation, unknown...",
        ),
        sa.Column("error_message", sa.Text(), nullable=True, comment="Error text, NULL on success"),
        sa.Column(
            "user_accepted",
            sa.Boolean(),
            nullable=True,
            comment="Whether the user accepted the result (feedback)",
        ),
        sa.Column(
            "user_rating", sa.Integer(), nullable=True, comment="User rating 1-5 (latest feedback)"
        ),
        sa.Column(
            "peak_memory_mb", sa.Double(), nullable=True, comment="Peak memory of the worker, MB"
        ),
        sa.Column(
            "cpu_time_seconds",
            sa.Double(),
            nullable=True,
            comment="CPU time of the worker, seconds",
        ),
        sa.Column(
            "solution_summary",
            sa.Text(),
            nullable=True,
            comment="Short summary of the solution: the pattern key",
        ),
        sa.Column(
            "embedding",
            VECTOR(384),
            nullable=True,
            comment="all-MiniLM-L6-v2 embedding of task_description (unit length, cosine)",
        ),
        sa.Column(
            "metadata",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
            comment="Free-form JSON from the producer",
        ),
        sa.Column(
            "uploaded_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
            comment="When the row was last written",
        ),
        sa.CheckConstraint(
            "routing_confidence BETWEEN 0 AND 1",
            name=op.f("ck_executions_routing_confidence_range"),
        ),
        sa.CheckConstraint(
            "complexity_score BETWEEN 0 AND 100", name=op.f("ck_executions_complexity_score_range")
        ),
        sa.CheckConstraint(
            "quality_score BETWEEN 0 AND 100", name=op.f("ck_executions_quality_score_range")
        ),
        sa.CheckConstraint(
            "user_rating BETWEEN 1 AND 5", name=op.f("ck_executions_user_rating_range")
        ),
        sa.CheckConstraint("file_count >= 0", name=op.f("ck_executions_file_count_nonnegative")),
        sa.CheckConstraint(
            "estimated_tokens >= 0", name=op.f("ck_executions_estimated_tokens_nonnegative")
        ),
        sa.CheckConstraint(
            "duration_seconds >= 0", name=op.f("ck_executions_duration_nonnegative")
        ),
        sa.CheckConstraint(
            "cost_estimate >= 0 AND actual_cost >= 0", name=op.f("ck_executions_costs_nonnegative")
        ),
        sa.CheckConstraint(
            "peak_memory_mb >= 0", name=op.f("ck_executions_peak_memory_nonnegative")
        ),
        sa.CheckConstraint(
            "cpu_time_seconds >= 0", name=op.f("ck_executions_cpu_time_nonnegative")
        ),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_executions")),
        comment=(
            "One row per task execution routed by the orchestrator: what the task was, which "
            "tier and pool ran it, and how it went. Written by orb-learning (upsert by task_id)."
        ),
    )
    op.create_index(
        "idx_executions_repo_task",
        "executions",
        ["repo", "task_type", sa.literal_column('"timestamp" DESC')],
    )
    op.create_index(
        "idx_executions_tier_success",
        "executions",
        ["model_tier", "success", sa.literal_column('"timestamp" DESC')],
    )
    op.create_index(
        "idx_executions_pool_duration", "executions", ["pool_type", "success", "duration_seconds"]
    )
    op.create_index(
        "idx_executions_quality_trend",
        "executions",
        ["repo", "quality_score", sa.literal_column('"timestamp" DESC')],
    )
    op.create_index("idx_executions_timestamp", "executions", ["timestamp"])
    op.create_index(
        "idx_executions_embedding_hnsw",
        "executions",
        ["embedding"],
        postgresql_using="hnsw",
        postgresql_with={"m": 16, "ef_construction": 64},
        postgresql_ops={"embedding": "vector_cosine_ops"},
    )
    for view in VIEWS:
        for statement in view.create_statements():
            op.execute(statement)


def downgrade() -> None:
    for view in reversed(VIEWS):
        op.execute(view.drop_statement())
    op.drop_table("executions")
    # The extension goes too, unless something else in this database still uses it.
    op.execute(
        "DO $$ BEGIN DROP EXTENSION IF EXISTS vector; "
        "EXCEPTION WHEN dependent_objects_still_exist THEN "
        "RAISE NOTICE 'extension vector kept: other objects use it'; END $$"
    )
