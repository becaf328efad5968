"""Routines that cannot be hijacked, and rows that cannot break the analytics.

1. ``orb_learning_mark_history_dirty`` (SECURITY DEFINER) was created with
   ``SET search_path FROM CURRENT``, which searches ``pg_temp`` first: a writer's temporary
   ``view_history_dirty`` with a trigger of its own ran that trigger as the function's owner
   (a superuser in the default setups). It is replaced in place with ``search_path`` pinned
   to the schema and ``pg_temp`` last, its tables schema-qualified, EXECUTE revoked from
   PUBLIC (see :mod:`orb_learning._history_marks`). The refresh routine (SECURITY INVOKER) gets
   the same pinned path, so a pg_cron job or any caller's search_path finds the right tables.
2. CHECK constraints hold every row to what the models accept: timestamps from 1970-01-01
   to 2100-01-01 (year 1 was stored as ``-infinity`` and broke retention), measures at most
   1e9 (two durations of 1e308 made every refresh fail with ``22003``), grouping keys at most
   200 characters (the views' unique indexes). Rows already outside those bounds are moved,
   with their feedback, to ``telemetry_dead_letters`` (reason ``revision 0009: ...``, the
   row as JSON without its embedding) before the constraints are added, so the upgrade
   never fails on old data and loses nothing.

The downgrade drops the constraints and keeps the pinned routines (reinstating a known
privilege escalation is never wanted); moved rows stay in the dead letters.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from orb_learning import _history_marks as history_marks, _routines as routines, schema

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EXECUTION_CHECKS = {
    "ck_executions_timestamp_range": schema.TIMESTAMP_RANGE,
    "ck_executions_measures_bounded": schema.MEASURES_BOUNDED,
    "ck_executions_keys_length": schema.KEYS_LENGTH,
}
FEEDBACK_CHECKS = {"ck_feedback_timestamp_range": schema.TIMESTAMP_RANGE}
REASON = "revision 0009: outside the bounds a stored row may hold"
# Both tables' rows as the dead letters' events (what writer.EXECUTION_RECORD names).
MOVE_EXECUTIONS = f"""\
INSERT INTO telemetry_dead_letters (task_id, reason, events, first_seen_at)
SELECT e.task_id, '{REASON} ({{which}})',
       jsonb_build_array(jsonb_build_object(
           'event_type', 'orb_learning.execution_record',
           'data', to_jsonb(e) - 'embedding',
           'feedback', coalesce((SELECT jsonb_agg(to_jsonb(f)) FROM feedback f
                                 WHERE f.task_id = e.task_id), '[]'::jsonb))),
       e.uploaded_at
FROM executions e WHERE NOT ({{check}})
ON CONFLICT DO NOTHING"""
MOVE_FEEDBACK = f"""\
INSERT INTO telemetry_dead_letters (task_id, reason, events, first_seen_at)
SELECT f.task_id, '{REASON} ({{which}})',
       jsonb_build_array(jsonb_build_object('event_type', 'orb_learning.feedback',
                                            'data', to_jsonb(f))),
       f.recorded_at
FROM feedback f WHERE NOT ({{check}})
ON CONFLICT DO NOTHING"""


def upgrade() -> None:
    op.execute(
        history_marks.in_current_schema(
            history_marks.MARK_HISTORY_DIRTY_V2,
            history_marks.REVOKE_MARK_FROM_PUBLIC,
            f"ALTER FUNCTION %1$I.{routines.REFRESH_FUNCTION}(interval, interval, boolean) "
            + history_marks.PINNED_SEARCH_PATH,
        )
    )
    for table, move, checks in (
        ("feedback", MOVE_FEEDBACK, FEEDBACK_CHECKS),
        ("executions", MOVE_EXECUTIONS, EXECUTION_CHECKS),
    ):
        for name, check in checks.items():
            op.execute(move.format(check=check, which=name.removeprefix(f"ck_{table}_")))
            op.execute(f"DELETE FROM {table} WHERE NOT ({check})")
            op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({check})")


def downgrade() -> None:
    for table, checks in (("executions", EXECUTION_CHECKS), ("feedback", FEEDBACK_CHECKS)):
        for name in checks:
            op.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}")
