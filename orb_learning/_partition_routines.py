"""The routines of the time partitions (revision 0011), versioned like the views.

``executions`` is one table by default and range-partitioned by ``timestamp`` once a
deployment converts it (:func:`orb_learning.partitions.convert_table`, decision 0011); the
keys and their triggers are the same in both shapes. A partitioned table's primary key
must include the partition key, so ``(task_id, timestamp)`` is the key PostgreSQL checks;
task_id's own uniqueness is kept by ``execution_keys`` (one row per execution) and the
statement triggers here, for every writer (the library's upsert, an import, psql):

* an INSERT adds its rows' keys; a row whose task_id is already stored with another
  timestamp fails with ``unique_violation`` (the key table's primary key makes two
  concurrent inserts of one task_id wait for each other, then one of them fails);
* an UPDATE that moves a row in time moves its key (the key row stays, so the feedback
  that references it stays too); a DELETE removes the keys of its rows (their feedback goes
  with them, ``ON DELETE CASCADE``); a TRUNCATE removes all keys.

The library's upsert (:mod:`orb_learning._store`) locks the keys of its batch first, so a
retry with another timestamp updates the one row instead of failing.

``orb_learning_create_partitions(ahead, every)`` creates the partitions: one per period
(``month`` by default; ``week`` or ``day``) that holds rows in the default partition (it
moves them into it) and for the current period and ``ahead`` more. The period of the newest
partition is the default period, so a deployment changes it once, with ``every``. New
periods are clipped against existing partitions, so changing the period never overlaps.

All of them are SECURITY DEFINER for the same reason as the history marks (the writer and
refresher roles own no table) and pinned the same way (:data:`PINNED_SEARCH_PATH`).
"""

from __future__ import annotations

from ._ddl import statement_triggers
from ._history_marks import PINNED_SEARCH_PATH

PARTITION_LOCK_KEY = 1869770352
"""Key of the transaction advisory lock that makes partition maintenance single-flight."""
DEFAULT_PARTITION = "executions_default"
KEYS_TABLE = "execution_keys"
TRACK_FUNCTION = "orb_learning_track_task_ids"
CREATE_FUNCTION = "orb_learning_create_partitions"
LIST_FUNCTION = "orb_learning_partitions"
PERIODS = ("day", "week", "month")
DEFAULT_AHEAD = 3


def leaves(relation: str = "'executions'") -> str:
    """SQL listing the relations holding the rows of ``relation`` (SQL yielding a regclass:
    a table or an index): its leaf partitions, or itself when it is not partitioned, since
    ``pg_partition_tree`` lists nothing for a plain table or index."""
    return (
        f"SELECT relid FROM pg_partition_tree({relation}) WHERE isleaf UNION ALL "
        f"SELECT ({relation})::regclass WHERE (SELECT relkind FROM pg_class "
        f"WHERE oid = ({relation})::regclass) IN ('r', 'i')"
    )


TRACK_TASK_IDS_V1 = f"""\
CREATE OR REPLACE FUNCTION %1$I.{TRACK_FUNCTION}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER {PINNED_SEARCH_PATH}
AS $function$
DECLARE
    clash record;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM %1$I.{KEYS_TABLE};
        RETURN NULL;
    ELSIF TG_OP = 'DELETE' THEN
        DELETE FROM %1$I.{KEYS_TABLE} k USING old_rows o
        WHERE k.task_id = o.task_id AND k."timestamp" = o."timestamp";
        RETURN NULL;
    ELSIF TG_OP = 'UPDATE' THEN
        -- A row moved in time keeps its key row, and so its feedback.
        UPDATE %1$I.{KEYS_TABLE} k SET "timestamp" = n."timestamp"
        FROM old_rows o JOIN new_rows n USING (task_id)
        WHERE k.task_id = o.task_id AND k."timestamp" = o."timestamp"
          AND n."timestamp" <> o."timestamp";
        DELETE FROM %1$I.{KEYS_TABLE} k USING old_rows o
        WHERE k.task_id = o.task_id AND k."timestamp" = o."timestamp"
          AND NOT EXISTS (SELECT 1 FROM new_rows n WHERE n.task_id = o.task_id);
    END IF;
    INSERT INTO %1$I.{KEYS_TABLE} (task_id, "timestamp")
    SELECT task_id, "timestamp" FROM new_rows ON CONFLICT (task_id) DO NOTHING;
    SELECT n.task_id, k."timestamp" INTO clash
    FROM new_rows n JOIN %1$I.{KEYS_TABLE} k USING (task_id)
    WHERE k."timestamp" <> n."timestamp" LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'unique_violation',
            CONSTRAINT = 'pk_{KEYS_TABLE}',
            MESSAGE = concat('task_id ', clash.task_id, ' is already stored (timestamp ',
                             clash."timestamp", ')'),
            HINT = 'Store it through orb-learning (an upsert by task_id), or UPDATE that row.';
    END IF;
    RETURN NULL;
END
$function$"""
TRACK_TASK_IDS_V1_COMMENT = (
    f"COMMENT ON FUNCTION %1$I.{TRACK_FUNCTION}() IS 'Statement-level trigger of executions: "
    "keeps execution_keys (task_id unique across the partitions) in step with the rows.'"
)
REVOKE_TRACK_FROM_PUBLIC = f"REVOKE EXECUTE ON FUNCTION %1$I.{TRACK_FUNCTION}() FROM PUBLIC"
KEY_TRIGGERS_V1 = statement_triggers("orb_learning_keys", TRACK_FUNCTION)
DROP_TRACK_FUNCTION_V1 = f"DROP FUNCTION IF EXISTS {TRACK_FUNCTION}()"

# A partition's indexes are named after the parent's, with the partition's suffix
# (idx_executions_embedding_hnsw_2026_01): plans then name the index they use. ``{part}`` is
# the partition's regclass, ``{suffix}`` its name after "executions_".
NAME_INDEXES = """\
        FOR child IN
            SELECT c.relname AS name, p.relname AS parent
            FROM pg_catalog.pg_index x
            JOIN pg_catalog.pg_class c ON c.oid = x.indexrelid
            JOIN pg_catalog.pg_inherits i ON i.inhrelid = c.oid
            JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
            WHERE x.indrelid = {part}
        LOOP
            IF child.name <> left(child.parent || '_' || {suffix}, 63) THEN
                EXECUTE 'ALTER INDEX ' || quote_ident(current_schema()) || '.'
                    || quote_ident(child.name) || ' RENAME TO '
                    || quote_ident(left(child.parent || '_' || {suffix}, 63));
            END IF;
        END LOOP;"""

# The bounds as pg_get_expr prints them; the function runs with TimeZone UTC, so they
# parse back to the same instants.
_BOUND = "substring(pg_get_expr(c.relpartbound, c.oid) FROM $re${which} \\('([^']+)'\\)$re$)"
LIST_PARTITIONS_V1 = f"""\
CREATE OR REPLACE FUNCTION %1$I.{LIST_FUNCTION}()
RETURNS TABLE (partition_name text, range_start timestamptz, range_end timestamptz,
               period text, rows_estimate bigint, is_default boolean)
LANGUAGE sql STABLE {PINNED_SEARCH_PATH} SET "TimeZone" = 'UTC'
AS $function$
SELECT c.relname::text, b.range_start, b.range_end,
       CASE WHEN b.range_end = b.range_start + interval '1 month'
                 AND b.range_start = date_trunc('month', b.range_start) THEN 'month'
            WHEN b.range_end = b.range_start + interval '7 days'
                 AND b.range_start = date_trunc('week', b.range_start) THEN 'week'
            WHEN b.range_end = b.range_start + interval '1 day'
                 AND b.range_start = date_trunc('day', b.range_start) THEN 'day' END,
       greatest(c.reltuples, 0)::bigint, c.relpartbound IS NOT NULL AND b.range_start IS NULL
FROM pg_catalog.pg_inherits i
JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
CROSS JOIN LATERAL (SELECT {_BOUND.format(which="FROM")}::timestamptz AS range_start,
                           {_BOUND.format(which="TO")}::timestamptz AS range_end) b
WHERE i.inhparent = '%1$I.executions'::regclass AND NOT i.inhdetachpending
ORDER BY b.range_start NULLS LAST
$function$"""
LIST_PARTITIONS_V1_COMMENT = (
    f"COMMENT ON FUNCTION %1$I.{LIST_FUNCTION}() IS 'The partitions of executions: name, "
    "range [start, end), period (month, week, day; NULL when clipped), the planner''s row "
    "estimate, and whether it is the default partition.'"
)

_SUFFIX = "substr(part.partition_name, 12)"  # after "executions_"
NAME_ALL_INDEXES = f"""\
DO $names$
DECLARE
    part record;
    child record;
BEGIN
    FOR part IN SELECT p.partition_name FROM {LIST_FUNCTION}() p LOOP
{NAME_INDEXES.format(part="part.partition_name::regclass", suffix=_SUFFIX)}
    END LOOP;
END
$names$"""
"""Names every partition's indexes (the migration, after building them)."""

CREATE_PARTITIONS_V1 = f"""\
CREATE OR REPLACE FUNCTION %1$I.{CREATE_FUNCTION}(
    ahead integer DEFAULT {DEFAULT_AHEAD}, every text DEFAULT NULL
)
RETURNS TABLE (partition_name text, range_start timestamptz, range_end timestamptz,
               moved_rows bigint)
LANGUAGE plpgsql SECURITY DEFINER {PINNED_SEARCH_PATH} SET "TimeZone" = 'UTC'
AS $function$
DECLARE
    parent text := quote_ident(current_schema()) || '.executions';
    fallback text := quote_ident(current_schema()) || '.{DEFAULT_PARTITION}';
    unit text := every;
    step interval;
    slot timestamptz;
    gap record;
    target text;
    child record;
BEGIN
    IF ahead IS NULL OR ahead < 0 OR ahead > 120 THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = concat('ahead must be between 0 and 120 periods, not ',
                             coalesce(ahead::text, 'NULL'));
    END IF;
    IF unit IS NOT NULL AND unit NOT IN ('day', 'week', 'month') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
            MESSAGE = concat('every must be day, week or month, not ', quote_literal(unit));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_partitioned_table
                   WHERE partrelid = '%1$I.executions'::regclass) THEN
        RETURN;  -- one table (the default): nothing to create until it is converted
    END IF;
    PERFORM pg_advisory_xact_lock({PARTITION_LOCK_KEY});
    IF unit IS NULL THEN
        SELECT p.period INTO unit FROM %1$I.{LIST_FUNCTION}() p
        WHERE p.period IS NOT NULL ORDER BY p.range_start DESC LIMIT 1;
    END IF;
    unit := coalesce(unit, 'month');
    step := ('1 ' || unit)::interval;
    FOR slot IN
        SELECT DISTINCT date_trunc(unit, d."timestamp") FROM %1$I.{DEFAULT_PARTITION} d
        UNION SELECT date_trunc(unit, now()) + step * g FROM generate_series(0, ahead) g
        ORDER BY 1
    LOOP
        FOR gap IN
            WITH parts AS (
                SELECT p.range_start AS s, p.range_end AS e FROM %1$I.{LIST_FUNCTION}() p
                WHERE NOT p.is_default AND p.range_start < slot + step AND p.range_end > slot
            ), edges AS (
                SELECT coalesce(lag(e) OVER (ORDER BY s), slot) AS a, s AS b FROM parts
                UNION ALL SELECT coalesce(max(e), slot), slot + step FROM parts
            )
            SELECT greatest(a, slot) AS a, least(b, slot + step) AS b FROM edges
            WHERE greatest(a, slot) < least(b, slot + step)
        LOOP
            target := 'executions_' || to_char(gap.a, CASE
                WHEN unit = 'month' AND gap.b = gap.a + step THEN 'YYYY_MM' ELSE 'YYYY_MM_DD' END);
            IF to_regclass(quote_ident(current_schema()) || '.' || target) IS NOT NULL THEN
                target := target || '_' || to_char(gap.b, 'YYYY_MM_DD');
            END IF;
            partition_name := target; range_start := gap.a; range_end := gap.b;
            target := quote_ident(current_schema()) || '.' || quote_ident(target);
            EXECUTE 'CREATE TABLE ' || target || ' (LIKE ' || parent
                || ' INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)';
            -- Rows that landed in the default partition move first (its lock keeps new ones
            -- out until the commit), so that ATTACH finds none of them left there.
            EXECUTE 'LOCK TABLE ' || fallback || ' IN SHARE ROW EXCLUSIVE MODE';
            EXECUTE 'WITH moved AS (DELETE FROM ' || fallback
                || ' WHERE "timestamp" >= $1 AND "timestamp" < $2 RETURNING *) INSERT INTO '
                || target || ' SELECT * FROM moved' USING gap.a, gap.b;
            GET DIAGNOSTICS moved_rows = ROW_COUNT;
            EXECUTE 'ALTER TABLE ' || parent || ' ATTACH PARTITION ' || target
                || ' FOR VALUES FROM (' || quote_literal(gap.a) || ') TO ('
                || quote_literal(gap.b) || ')';
            EXECUTE 'COMMENT ON TABLE ' || target || ' IS '
                || quote_literal(concat('Partition of executions: [', gap.a, ', ', gap.b, ')'));
{NAME_INDEXES.format(part="target::regclass", suffix="substr(partition_name, 12)")}
            RETURN NEXT;
        END LOOP;
    END LOOP;
END
$function$"""
CREATE_PARTITIONS_V1_COMMENT = (
    f"COMMENT ON FUNCTION %1$I.{CREATE_FUNCTION}(integer, text) IS 'Creates the partitions of "
    "executions for the periods holding rows in the default partition (moving them) and "
    "for the current period and ahead more (day, week or month: every, else the newest "
    "partition''s period); returns the partitions created.'"
)
REVOKE_CREATE_FROM_PUBLIC = (
    f"REVOKE EXECUTE ON FUNCTION %1$I.{CREATE_FUNCTION}(integer, text) FROM PUBLIC"
)
DROP_PARTITION_FUNCTIONS_V1 = (
    f"DROP FUNCTION IF EXISTS {CREATE_FUNCTION}(integer, text)",
    f"DROP FUNCTION IF EXISTS {LIST_FUNCTION}()",
)

KEYS_TABLE_V1 = (
    f'CREATE TABLE {KEYS_TABLE} (task_id uuid NOT NULL, "timestamp" timestamptz NOT NULL)',
    f'INSERT INTO {KEYS_TABLE} SELECT task_id, "timestamp" FROM executions',
    f"ALTER TABLE {KEYS_TABLE} ADD CONSTRAINT pk_{KEYS_TABLE} PRIMARY KEY (task_id)",
    f'CREATE INDEX idx_{KEYS_TABLE}_timestamp ON {KEYS_TABLE} ("timestamp")',
    f"COMMENT ON TABLE {KEYS_TABLE} IS 'One row per execution: keeps task_id "
    "unique across the partitions of executions (a partitioned table''s keys must include "
    "the partition key), kept by the statement triggers of executions; feedback references "
    "it.'",
    f"COMMENT ON COLUMN {KEYS_TABLE}.task_id IS 'A task_id stored in executions'",
    f"COMMENT ON COLUMN {KEYS_TABLE}.\"timestamp\" IS 'Its execution''s "
    "timestamp: the partition holding it'",
)
"""``execution_keys`` as revision 0011 creates it, filled from the rows."""
KEYS_FOREIGN_KEY = (
    "ALTER TABLE feedback ADD CONSTRAINT fk_feedback_task_id_execution_keys "
    "FOREIGN KEY (task_id) REFERENCES execution_keys (task_id) ON DELETE CASCADE"
)
EXECUTIONS_COMMENTS_V1 = (
    "COMMENT ON TABLE executions IS 'One row per task execution routed by the orchestrator: "
    "what the task was, which tier and pool ran it, and how it went. Written by orb-learning "
    "(upsert by task_id). One table, or range-partitioned by timestamp once converted "
    "(orb-learning db partitions --convert).'",
    "COMMENT ON COLUMN executions.task_id IS 'Task identifier (UUID), the upsert key: kept "
    "unique by execution_keys, across partitions too'",
    'COMMENT ON COLUMN executions."timestamp" IS \'When the task ran (timestamptz, UTC in the '
    "API); the partition key once partitioned'",
)
