"""``executions`` range-partitioned by ``timestamp``, monthly, with ``execution_keys``.

Why (docs/decisions/0011-time-partitions.md): retention drops whole months instead of
deleting rows out of one HNSW graph (a 1% delete at a million rows cost a 474-552 s index
rebuild), and a search with ``days_back`` reads only the months it covers.

What changes: the primary key becomes ``(task_id, timestamp)`` (a partitioned table's
keys must include the partition key) and ``execution_keys`` keeps task_id unique across
the partitions, through statement triggers (:mod:`orb_learning._partition_routines`);
feedback references it. Partitions for every month holding rows and three ahead, a default
partition, ``orb_learning_partitions()`` and ``orb_learning_create_partitions()``. The
views, their grants and the history triggers are recreated on the new table.

How: a table of more than ``BATCH_ROWS`` rows is copied in committed batches of that many
(resumable: a rerun continues after the last batch; writes go on meanwhile and are copied
again at the end), then the indexes are built, then one transaction swaps the tables under
an ACCESS EXCLUSIVE lock (measured at a million rows in bench/results.json). A smaller one
is converted in this revision's transaction. The downgrade copies the rows back into one
table and rebuilds its indexes, in one transaction.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

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
    bind = op.get_bind()
    if context.is_offline_mode():  # `alembic upgrade --sql`: the one-transaction path
        _convert_in_one_transaction(bind)
        convert.swap(bind)
        return
    if convert.is_partitioned(bind):
        return
    if convert.row_count(bind) <= convert.BATCH_ROWS:
        _convert_in_one_transaction(bind)
    else:
        with op.get_context().autocommit_block():
            convert.prepare(bind)
            convert.copy_batches(bind)
            convert.build_indexes(bind)
    convert.swap(bind)


def _convert_in_one_transaction(bind: Connection) -> None:
    convert.prepare(bind)
    convert.copy_all(bind)
    convert.build_indexes(bind)


def downgrade() -> None:
    bind = op.get_bind()
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
