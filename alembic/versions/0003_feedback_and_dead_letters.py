"""User feedback on executions, and the dead letters of telemetry capture.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("feedback_id", sa.Uuid(), nullable=False, comment="Feedback identifier (UUID)"),
        sa.Column(
            "task_id",
            sa.Uuid(),
            nullable=False,
            comment="The execution rated; feedback goes with it when it is deleted",
        ),
        sa.Column(
            "timestamp", sa.DateTime(timezone=True), nullable=False, comment="When it was given"
        ),
        sa.Column(
            "feedback_type", sa.Text(), nullable=False, comment="thumbs_up, thumbs_down, rating..."
        ),
        sa.Column("rating", sa.Integer(), nullable=False, comment="Rating 1-5"),
        sa.Column("comment", sa.Text(), nullable=True, comment="Free text"),
        sa.Column(
            "user_id",
            sa.Uuid(),
            nullable=True,
            comment="Who gave it; NULL when anonymous (the default)",
        ),
        sa.Column(
            "recorded_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
            comment="When the row was written",
        ),
        sa.CheckConstraint("rating BETWEEN 1 AND 5", name=op.f("ck_feedback_rating_range")),
        sa.CheckConstraint("feedback_type <> ''", name=op.f("ck_feedback_feedback_type_not_empty")),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["executions.task_id"],
            name=op.f("fk_feedback_task_id_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("feedback_id", name=op.f("pk_feedback")),
        comment="User feedback on executions, several per execution allowed; the latest sets "
        "executions.user_rating and user_accepted.",
    )
    op.create_index(
        "idx_feedback_task_time", "feedback", ["task_id", sa.literal_column('"timestamp" DESC')]
    )
    op.create_table(
        "telemetry_dead_letters",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column(
            "task_id",
            sa.Uuid(),
            nullable=True,
            comment="The task the events were about, when known",
        ),
        sa.Column(
            "reason", sa.Text(), nullable=False, comment="Why the events could not be stored"
        ),
        sa.Column(
            "events",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            comment="The raw events, as captured",
        ),
        sa.Column(
            "first_seen_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="When the first of these events was captured",
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
            comment="When the dead letter was written",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_telemetry_dead_letters")),
        comment="Telemetry that could not become an execution (a half that never met its "
        "other half within orphan_ttl, feedback for an unknown task...), kept for inspection.",
    )
    op.create_index(
        "uq_telemetry_dead_letters_event",
        "telemetry_dead_letters",
        ["task_id", "reason", "first_seen_at"],
        unique=True,
        postgresql_nulls_not_distinct=True,
    )


def downgrade() -> None:
    op.drop_index("uq_telemetry_dead_letters_event", table_name="telemetry_dead_letters")
    op.drop_table("telemetry_dead_letters")
    op.drop_index("idx_feedback_task_time", table_name="feedback")
    op.drop_table("feedback")
