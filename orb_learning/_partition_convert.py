"""The conversion of ``executions`` into monthly partitions, step by step (decision 0011).

A deployment asks for it (``orb-learning db partitions --convert``,
:func:`orb_learning.partitions.convert_table`) on a database at revision 0011 or later,
whose ``executions`` is one table with ``execution_keys`` already kept by its triggers.

The rows are copied into a shadow table (``executions_partitioned``) in committed batches
while the old table stays in service: a statement trigger on it records every task_id
written, changed or deleted meanwhile (``executions_conversion_changes``), and a batch is
``batch_rows`` rows in task_id order, so an interrupted upgrade resumes after the last
batch that committed. The indexes are then built on the shadow (the HNSW graphs one per
partition, each from its rows at once), and one short transaction under an ACCESS
EXCLUSIVE lock copies the recorded rows again, swaps the tables and recreates what
depended on the old table (views, triggers, grants); ``execution_keys`` and the feedback
that references it are not touched (the old table's triggers kept the keys meanwhile).

Functions take an SQLAlchemy connection (the migration's, or the conversion's in
autocommit); every statement is a constant of this module or built from catalog names the
server quotes, never from input.
"""

from __future__ import annotations

import logging

from alembic import context, op
from sqlalchemy import text
from sqlalchemy.engine import Connection

from . import (
    _history_marks as history_marks,
    _partition_routines as routines,
    _route_log as route_log,
)
from ._ddl import MaterializedView, statement_triggers
from ._sealed import SEALED_VIEWS, SealedView

logger = logging.getLogger("alembic.orb_learning.partitions")
SHADOW = "executions_partitioned"
CHANGES = "executions_conversion_changes"
CHANGES_FUNCTION = "orb_learning_conversion_changes"
BATCH_ROWS = 20_000
AHEAD_MONTHS = routines.DEFAULT_AHEAD
INDEXES = {  # revision 0010's indexes of executions, as the partitioned parent has them
    "idx_executions_repo_task": '(repo, task_type, "timestamp" DESC)',
    "idx_executions_tier_success": '(model_tier, success, "timestamp" DESC)',
    "idx_executions_pool_duration": "(pool_type, success, duration_seconds)",
    "idx_executions_quality_trend": '(repo, quality_score, "timestamp" DESC)',
    "idx_executions_timestamp": '("timestamp")',
    "idx_executions_recommendation_id": ("(recommendation_id) WHERE recommendation_id IS NOT NULL"),
    "idx_executions_embedding_hnsw": (
        "USING hnsw (embedding halfvec_cosine_ops) WITH (m = 16, ef_construction = 128)"
    ),
}
MEMORY = "SET maintenance_work_mem = '2GB'"  # as revision 0008's build
_VIEWS: tuple[MaterializedView | SealedView, ...] = tuple(
    item for view in SEALED_VIEWS for item in (*view.parts, view)
)
"""Each public view after its parts (a merged one is a materialized view of its own)."""
_DEPENDENTS = (
    *(view.name for view in _VIEWS),
    route_log.OUTCOMES_VIEW,
)

MONTH_PARTITIONS = f"""\
DO $months$
DECLARE
    m timestamptz;
    name text;
BEGIN
    SET LOCAL "TimeZone" = 'UTC';
    FOR m IN
        SELECT DISTINCT date_trunc('month', "timestamp") FROM executions
        UNION SELECT date_trunc('month', now()) + interval '1 month' * g
        FROM generate_series(0, {AHEAD_MONTHS}) g
    LOOP
        name := 'executions_' || to_char(m, 'YYYY_MM');
        EXECUTE 'CREATE TABLE IF NOT EXISTS ' || quote_ident(name) || ' PARTITION OF {SHADOW} '
            || 'FOR VALUES FROM (' || quote_literal(m) || ') TO ('
            || quote_literal(m + interval '1 month') || ')';
        EXECUTE 'COMMENT ON TABLE ' || quote_ident(name) || ' IS '
            || quote_literal(concat('Partition of executions: [', m, ', ',
                                    m + interval '1 month', ')'));
    END LOOP;
END
$months$"""
FREE_NAMES = f"""\
DO $names$
DECLARE
    old text;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'pk_executions'
               AND conrelid = 'executions'::regclass) THEN
        ALTER TABLE executions RENAME CONSTRAINT pk_executions TO pk_executions_old;
    END IF;
    FOR old IN SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
               WHERE i.indrelid = 'executions'::regclass
                 AND c.relname = ANY (ARRAY[{", ".join(f"'{n}'" for n in INDEXES)}])
    LOOP
        EXECUTE 'ALTER INDEX ' || quote_ident(old) || ' RENAME TO ' || quote_ident(old || '_old');
    END LOOP;
END
$names$"""
SAVE_GRANTS = """\
CREATE TEMP TABLE orb_learning_saved_grants ON COMMIT DROP AS
SELECT format('GRANT %s ON %I TO %s', a.privilege_type, c.relname,
              CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END) AS grant_sql,
       c.relname = 'executions' AND a.privilege_type IN ('SELECT', 'INSERT') AS on_executions,
       a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END
           AS grantee
FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
LEFT JOIN pg_roles r ON r.oid = a.grantee
WHERE c.relnamespace = current_schema()::regnamespace AND c.relname IN ({names})
  AND a.grantee <> c.relowner"""
RESTORE_GRANTS = """\
DO $grants$
DECLARE
    statement text;
BEGIN
    FOR statement IN SELECT grant_sql FROM orb_learning_saved_grants LOOP
        EXECUTE statement;
    END LOOP;
END
$grants$"""
"""What other roles held on the old table and its views, granted again."""
KEY_GRANTS = f"""\
DO $grants$
DECLARE
    statement text;
BEGIN
    FOR statement IN
        SELECT 'GRANT ' || CASE WHEN bool_or(privilege_type = 'INSERT')
                                THEN 'SELECT, INSERT, UPDATE' ELSE 'SELECT' END
               || ' ON {routines.KEYS_TABLE} TO ' || grantee
        FROM orb_learning_saved_grants WHERE on_executions GROUP BY grantee
    LOOP
        EXECUTE statement;
    END LOOP;
END
$grants$"""
"""Who could read executions reads execution_keys; who could write it writes the keys."""

_CHANGES_FUNCTION = f"""\
CREATE OR REPLACE FUNCTION %1$I.{CHANGES_FUNCTION}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER {history_marks.PINNED_SEARCH_PATH}
AS $function$
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO %1$I.{CHANGES} SELECT DISTINCT task_id FROM new_rows ON CONFLICT DO NOTHING;
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        INSERT INTO %1$I.{CHANGES} SELECT DISTINCT task_id FROM old_rows ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END
$function$"""
_CHANGE_TRIGGERS = statement_triggers(
    "orb_learning_conversion",
    CHANGES_FUNCTION,
    events=("INSERT", "UPDATE", "DELETE"),
    create="CREATE OR REPLACE TRIGGER",
)


def ddl(bind: Connection, statement: str) -> None:
    """A statement of this module, sent as it is (no bind parameters: a literal's colons
    stay colons); written out by ``alembic upgrade --sql``, which has no connection."""
    if _offline():
        op.execute(text(statement.replace(":", "\\:")))
    else:
        bind.exec_driver_sql(statement)


def _offline() -> bool:
    """Whether ``alembic upgrade --sql`` is writing the statements out (no connection);
    False outside a migration (the conversion command)."""
    try:
        return bool(context.is_offline_mode())
    except (NameError, AttributeError):  # alembic's proxy: no migration is running
        return False


def is_partitioned(bind: Connection) -> bool:
    return bool(
        bind.execute(
            text("SELECT relkind = 'p' FROM pg_class WHERE oid = 'executions'::regclass")
        ).scalar()
    )


def row_count(bind: Connection) -> int:
    return int(bind.execute(text("SELECT count(*) FROM executions")).scalar() or 0)


def prepare(bind: Connection) -> None:
    """The shadow table, its partitions (every month holding rows, and three ahead), the
    change log on the old table, and the old indexes renamed out of the way (idempotent)."""
    ddl(
        bind,
        (
            f"CREATE TABLE IF NOT EXISTS {SHADOW} (LIKE executions INCLUDING DEFAULTS "
            "INCLUDING CONSTRAINTS INCLUDING COMMENTS INCLUDING STORAGE) "
            'PARTITION BY RANGE ("timestamp")'
        ),
    )
    ddl(
        bind,
        (f"CREATE TABLE IF NOT EXISTS {routines.DEFAULT_PARTITION} PARTITION OF {SHADOW} DEFAULT"),
    )
    ddl(bind, MONTH_PARTITIONS)
    ddl(bind, (f"CREATE TABLE IF NOT EXISTS {CHANGES} (task_id uuid PRIMARY KEY)"))
    ddl(bind, (history_marks.in_current_schema(_CHANGES_FUNCTION)))
    for trigger in _CHANGE_TRIGGERS:
        ddl(bind, trigger)
    _free_names(bind)


def _free_names(bind: Connection) -> None:
    """Rename the old table's indexes (and its key) so the shadow's can take their names."""
    ddl(bind, FREE_NAMES)


def copy_batches(bind: Connection) -> int:
    """Copy the rows not yet in the shadow, :data:`BATCH_ROWS` at a time in task_id order,
    one statement each (committed by itself in the migration's autocommit block); return
    how many were copied."""
    batch_rows = BATCH_ROWS
    total = row_count(bind)
    after = bind.execute(
        text(f"SELECT task_id FROM {SHADOW} ORDER BY task_id DESC LIMIT 1")
    ).scalar()
    done = int(bind.execute(text(f"SELECT count(*) FROM {SHADOW}")).scalar() or 0)
    if done:
        logger.info("executions -> partitions: resuming after %s rows", f"{done:,}")
    copied = 0
    while True:
        count, after = bind.execute(
            text(
                "WITH batch AS (SELECT * FROM executions WHERE task_id > "
                "coalesce(CAST(:after AS uuid), '00000000-0000-0000-0000-000000000000') "
                "ORDER BY task_id LIMIT :rows), "
                f"copied AS (INSERT INTO {SHADOW} SELECT * FROM batch) "
                "SELECT (SELECT count(*) FROM batch), "
                "(SELECT task_id FROM batch ORDER BY task_id DESC LIMIT 1)"
            ),
            {"after": after, "rows": batch_rows},
        ).one()
        if not count:
            return copied
        copied += count
        shown = min(done + copied, max(total, 1))
        logger.info(
            "executions -> partitions: %s of %s rows copied (%.0f%%)",
            f"{shown:,}",
            f"{total:,}",
            100.0 * shown / max(total, 1),
        )


def copy_phase(bind: Connection) -> None:
    """Everything before the swap, on a connection in autocommit (each statement commits
    by itself, so that an interruption keeps the batches done)."""
    prepare(bind)
    copy_batches(bind)
    build_indexes(bind)


def build_indexes(bind: Connection) -> None:
    """The shadow's primary key and indexes (each built per partition by PostgreSQL; an
    index a resumed run finds built is kept)."""
    steps = [
        f"DO $pk$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = "
        f"'pk_executions' AND conrelid = '{SHADOW}'::regclass) THEN ALTER TABLE {SHADOW} "
        'ADD CONSTRAINT pk_executions PRIMARY KEY (task_id, "timestamp"); END IF; END $pk$',
        *(f"CREATE INDEX IF NOT EXISTS {name} ON {SHADOW} {how}" for name, how in INDEXES.items()),
    ]
    for number, statement in enumerate(steps, 1):
        logger.info("executions -> partitions: index %d of %d", number, len(steps))
        ddl(bind, MEMORY)
        ddl(bind, statement)
    ddl(bind, "RESET maintenance_work_mem")


def copy_all(bind: Connection) -> None:
    """The rows not yet in the shadow, in one statement (a small table, or ``--sql``)."""
    ddl(
        bind,
        f"INSERT INTO {SHADOW} SELECT * FROM executions e "
        f"WHERE NOT EXISTS (SELECT 1 FROM {SHADOW} s WHERE s.task_id = e.task_id)",
    )


def swap(bind: Connection) -> None:
    """Under an ACCESS EXCLUSIVE lock on the old table: copy the rows changed since the copy
    began again, drop the old table and what depended on it, and put the shadow in place."""
    ddl(bind, "LOCK TABLE executions IN ACCESS EXCLUSIVE MODE")
    ddl(bind, f"DELETE FROM {SHADOW} s USING {CHANGES} c WHERE s.task_id = c.task_id")
    ddl(bind, f"INSERT INTO {SHADOW} SELECT e.* FROM executions e JOIN {CHANGES} c USING (task_id)")
    save_grants(bind)
    drop_views(bind)
    ddl(bind, "DROP TABLE executions CASCADE")
    ddl(bind, f"DROP TABLE {CHANGES}")
    ddl(bind, f"DROP FUNCTION {CHANGES_FUNCTION}()")
    ddl(bind, f"ALTER TABLE {SHADOW} RENAME TO executions")
    ddl(bind, "ANALYZE executions")
    finish(bind)


KEYS_FOREIGN_KEY = routines.KEYS_FOREIGN_KEY
COMMENTS = routines.EXECUTIONS_COMMENTS_V1


def create_keys(bind: Connection) -> None:
    """``execution_keys``, filled from the rows of ``executions`` (revision 0011)."""
    for statement in routines.KEYS_TABLE_V1:
        ddl(bind, statement)


def finish(bind: Connection) -> None:
    """Comments, index names, triggers, views and grants of the partitioned table (the
    routines and ``execution_keys`` with its grants are revision 0011's, untouched)."""
    for statement in COMMENTS:  # the table's own comment is not copied by LIKE
        ddl(bind, statement)
    ddl(bind, routines.NAME_ALL_INDEXES)
    for trigger in (*history_marks.HISTORY_TRIGGERS_V1, *routines.KEY_TRIGGERS_V1):
        ddl(bind, trigger)
    create_views(bind)
    ddl(bind, RESTORE_GRANTS)


def install_routines(bind: Connection) -> None:
    """The key triggers' function and the partition functions (CREATE OR REPLACE)."""
    ddl(
        bind,
        history_marks.in_current_schema(
            routines.TRACK_TASK_IDS_V1,
            routines.TRACK_TASK_IDS_V1_COMMENT,
            routines.REVOKE_TRACK_FROM_PUBLIC,
            routines.LIST_PARTITIONS_V1,
            routines.LIST_PARTITIONS_V1_COMMENT,
            routines.CREATE_PARTITIONS_V1,
            routines.CREATE_PARTITIONS_V1_COMMENT,
            routines.REVOKE_CREATE_FROM_PUBLIC,
        ),
    )


def save_grants(bind: Connection) -> None:
    """What other roles hold on the table and its views, kept for :data:`RESTORE_GRANTS`
    in a temporary table (read on the server, so that ``--sql`` output does it too)."""
    names = ", ".join(f"'{name}'" for name in ("executions", *_DEPENDENTS))
    ddl(bind, SAVE_GRANTS.format(names=names))


def drop_views(bind: Connection) -> None:
    """Every view of :data:`_VIEWS` and the outcomes view, as what it is (a plain or a
    materialized view), decided on the server."""
    names = ", ".join(f"'{view.name}'" for view in reversed(_VIEWS))
    ddl(bind, route_log.DROP_OUTCOMES_V1)
    ddl(
        bind,
        f"""DO $drop$
DECLARE
    view record;
BEGIN
    FOR view IN SELECT c.relname, c.relkind
                FROM unnest(ARRAY[{names}]) WITH ORDINALITY AS v(name, n)
                JOIN pg_class c ON c.relname = v.name
                WHERE c.relnamespace = current_schema()::regnamespace ORDER BY v.n
    LOOP
        EXECUTE 'DROP ' || CASE view.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END
            || ' IF EXISTS ' || quote_ident(view.relname) || ' CASCADE';
    END LOOP;
END
$drop$""",
    )


def create_views(bind: Connection) -> None:
    for view in _VIEWS:
        for statement in view.create_statements():
            ddl(bind, statement)
    ddl(bind, route_log.OUTCOMES_V1)
    ddl(bind, route_log.OUTCOMES_V1_COMMENT)
