"""``execution_keys`` and the routines of time partitions; ``executions`` partitioned on request.

Why (docs/decisions/0011-time-partitions.md): partitioned by month, retention drops whole
months instead of deleting rows out of one HNSW graph (a 1% delete at a million rows cost a
474-552 s index rebuild). But a search over many months walks one graph per month: at
100,000 and 1,000,000 rows the benchmark measured wide windows several times slower than on
one table, so partitions are an option (``orb-learning db partitions --convert``), not the
default. This revision makes both shapes the same schema but for ``PARTITION BY``.

What changes: the primary key becomes ``(task_id, timestamp)`` (a partitioned table's
keys must include the partition key, and both shapes keep one key) and ``execution_keys``
keeps task_id unique whatever the shape, through statement triggers
(:mod:`orb_learning._partition_routines`); feedback references it.
``orb_learning_partitions()`` and ``orb_learning_create_partitions()`` (a no-op on one
table) are installed. All in place: no row is copied (the keys are filled from the rows).

The downgrade: on one table, in place; on a converted (partitioned) table, the rows are
copied back into one table and its indexes rebuilt, in one transaction.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from alembic import context, op
from sqlalchemy.engine import Connection

from orb_learning import (
    _history_marks as history_marks,
    _partition_convert as convert,
    _partition_routines as routines,
)

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FLAT = "executions_unpartitioned"
COMMENTS_0010 = (
    "COMMENT ON TABLE executions IS 'One row per task execution routed by the orchestrator: "
    "what the task was, which tier and pool ran it, and how it went. Written by orb-learning "
    "(upsert by task_id).'",
    "COMMENT ON COLUMN executions.task_id IS 'Task identifier (UUID), the upsert key'",
    'COMMENT ON COLUMN executions."timestamp" IS \'When the task ran (timestamptz, UTC in the '
    "API)'",
)


def upgrade() -> None:
    """In place, in this revision's transaction: the new primary key, ``execution_keys``
    filled from the rows, feedback's key moved to it, the routines and the key triggers.
    ``executions`` stays one table: partitioning it is a deployment's choice, made with
    ``orb-learning db partitions --convert`` (decision 0011)."""
    bind = op.get_bind()
    run = partial(convert.ddl, bind)
    convert.save_grants(bind)
    convert.create_keys(bind)
    run("ALTER TABLE feedback DROP CONSTRAINT fk_feedback_task_id_executions")
    run("ALTER TABLE executions DROP CONSTRAINT pk_executions")
    run('ALTER TABLE executions ADD CONSTRAINT pk_executions PRIMARY KEY (task_id, "timestamp")')
    run(convert.KEYS_FOREIGN_KEY)
    for statement in convert.COMMENTS:
        run(statement)
    convert.install_routines(bind)
    for trigger in routines.KEY_TRIGGERS_V1:
        run(trigger)
    run(convert.KEY_GRANTS)


def downgrade() -> None:
    bind = op.get_bind()
    if context.is_offline_mode() or not convert.is_partitioned(bind):
        _downgrade_in_place(bind)
        return
    run = bind.exec_driver_sql
    run(
        f"CREATE TABLE {FLAT} (LIKE executions INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
        "INCLUDING COMMENTS INCLUDING STORAGE)"
    )
    run(f"INSERT INTO {FLAT} SELECT * FROM executions")
    convert.save_grants(bind)
    convert.drop_views(bind)
    run("DROP TABLE executions CASCADE")
    run(f"DROP TABLE {routines.KEYS_TABLE} CASCADE")
    run(routines.DROP_TRACK_FUNCTION_V1)
    for statement in routines.DROP_PARTITION_FUNCTIONS_V1:
        run(statement)
    run(f"ALTER TABLE {FLAT} RENAME TO executions")
    run("ALTER TABLE executions ADD CONSTRAINT pk_executions PRIMARY KEY (task_id)")
    run(convert.MEMORY)
    for name, how in convert.INDEXES.items():
        run(f"CREATE INDEX {name} ON executions {how}")
    run("RESET maintenance_work_mem")
    run(
        "ALTER TABLE feedback ADD CONSTRAINT fk_feedback_task_id_executions FOREIGN KEY "
        "(task_id) REFERENCES executions (task_id) ON DELETE CASCADE"
    )
    for statement in COMMENTS_0010:
        run(statement)
    for trigger in history_marks.HISTORY_TRIGGERS_V1:
        run(trigger)
    convert.create_views(bind)
    run(convert.RESTORE_GRANTS)


def _downgrade_in_place(bind: Connection) -> None:
    """One table: the key triggers, routines and key table go; the 0010 keys come back."""
    run = partial(convert.ddl, bind)
    for trigger in routines.KEY_TRIGGERS_V1:
        run(f"DROP TRIGGER IF EXISTS {trigger.split()[2]} ON executions")
    run("ALTER TABLE feedback DROP CONSTRAINT fk_feedback_task_id_execution_keys")
    run(f"DROP TABLE {routines.KEYS_TABLE}")
    run(routines.DROP_TRACK_FUNCTION_V1)
    for statement in routines.DROP_PARTITION_FUNCTIONS_V1:
        run(statement)
    run("ALTER TABLE executions DROP CONSTRAINT pk_executions")
    run("ALTER TABLE executions ADD CONSTRAINT pk_executions PRIMARY KEY (task_id)")
    run(
        "ALTER TABLE feedback ADD CONSTRAINT fk_feedback_task_id_executions FOREIGN KEY "
        "(task_id) REFERENCES executions (task_id) ON DELETE CASCADE"
    )
    for statement in COMMENTS_0010:
        run(statement)
