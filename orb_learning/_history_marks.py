"""The trigger that marks sealed history as changed, versioned like the views.

A statement that writes, changes or deletes executions stamped before a history part's
seal records the oldest such timestamp in ``view_history_dirty``, so that the next
refresh rebuilds that history (see :mod:`orb_learning._sealed`).

Why SECURITY DEFINER: the marks must be written whichever role writes executions (a
writer, the owner's retention, an import), and a writer must not be able to forge or
edit them: it holds no INSERT or UPDATE on ``view_history_dirty``, the function's owner
does. The function is therefore written as PostgreSQL's "Writing SECURITY DEFINER
Functions Safely" asks: ``search_path`` pinned to the schema with ``pg_temp`` explicitly
last (so a caller's temporary tables can never stand in for the real ones, which revision
0007's ``SET search_path FROM CURRENT`` allowed: a writer's temporary ``view_history_dirty``
with a trigger of its own ran that trigger as the owner), every table schema-qualified,
and EXECUTE revoked from PUBLIC (a trigger function is never called directly). Revision
0009 replaces the function in place; ``orb-learning db validate`` checks the pinning.
"""

from __future__ import annotations

from ._ddl import statement_triggers

HISTORY_DIRTY_TABLE = "view_history_dirty"
MARK_FUNCTION = "orb_learning_mark_history_dirty"
CREATE_HISTORY_DIRTY = f"""\
CREATE TABLE {HISTORY_DIRTY_TABLE} (
    view_name text NOT NULL,
    since timestamptz NOT NULL,
    marked_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk_{HISTORY_DIRTY_TABLE} PRIMARY KEY (view_name)
)"""
HISTORY_DIRTY_COMMENTS = (
    f"COMMENT ON TABLE {HISTORY_DIRTY_TABLE} IS 'History parts (<view>_history_mv) that "
    "no longer match the executions: a statement wrote, changed or deleted executions stamped "
    "before their seal since their last refresh. The next orb_learning_refresh_views() "
    "rebuilds them and removes the row.'",
    f"COMMENT ON COLUMN {HISTORY_DIRTY_TABLE}.view_name IS 'The history part'",
    f"COMMENT ON COLUMN {HISTORY_DIRTY_TABLE}.since IS "
    "'The oldest timestamp written, changed or deleted before the seal'",
    f"COMMENT ON COLUMN {HISTORY_DIRTY_TABLE}.marked_at IS 'When it was first marked'",
)

# The columns the views read: an update that changes none of them (a user rating) leaves
# the history as it is.
_VIEW_COLUMNS = (
    "repo", "model_tier", "task_type", '"timestamp"', "success", "duration_seconds",
    "actual_cost", "quality_score", "pool_type", "solution_summary",
)  # fmt: skip


def _row(alias: str) -> str:
    return "(" + ", ".join(f"{alias}.{column}" for column in _VIEW_COLUMNS) + ")"


HISTORY_PARTS = (
    "ARRAY['tier_performance_history_mv', 'pool_performance_history_mv', "
    "'solution_patterns_history_mv']"
)


def _mark_function(header: str, watermarks: str, dirty: str) -> str:
    return f"""\
{header}
AS $function$
DECLARE
    oldest timestamptz;
BEGIN
    -- One aggregate over the statement's transition table, never a step per row.
    IF TG_OP = 'INSERT' THEN
        SELECT min("timestamp") INTO oldest FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT min("timestamp") INTO oldest FROM old_rows;
    ELSIF TG_OP = 'UPDATE' THEN
        SELECT min(least(o."timestamp", n."timestamp")) INTO oldest
        FROM old_rows o FULL JOIN new_rows n ON n.task_id = o.task_id
        WHERE {_row("o")}
              IS DISTINCT FROM {_row("n")};
    ELSE  -- TRUNCATE
        oldest := '-infinity';
    END IF;
    -- Seals lag at least two days: rows of yesterday and today are after every seal.
    IF oldest IS NULL
       OR oldest >= date_trunc('day', clock_timestamp(), 'UTC') - interval '1 day' THEN
        RETURN NULL;
    END IF;
    -- A refresh moving a seal updates its row first: either it waits for this transaction
    -- (and its rebuild sees these rows) or this waits for it and compares with the new seal.
    PERFORM 1 FROM {watermarks} w WHERE w.view_name = ANY ({HISTORY_PARTS}) FOR SHARE;
    INSERT INTO {dirty} AS d (view_name, since)
    SELECT w.view_name, oldest FROM {watermarks} w
    WHERE w.view_name = ANY ({HISTORY_PARTS}) AND oldest < w.watermark
    ON CONFLICT (view_name) DO UPDATE SET since = least(d.since, excluded.since);
    RETURN NULL;
END
$function$"""


# --- revision 0007 (unsafe: superseded by V2 in revision 0009) -----------------------------
MARK_HISTORY_DIRTY_V1 = _mark_function(
    f"CREATE FUNCTION {MARK_FUNCTION}() RETURNS trigger\n"
    "LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT",
    "view_watermarks",
    HISTORY_DIRTY_TABLE,
)
MARK_HISTORY_DIRTY_V1_COMMENT = (
    f"COMMENT ON FUNCTION {MARK_FUNCTION}() IS 'Statement-level trigger of executions: "
    "when a statement inserts, updates (a column the views read), deletes or truncates rows "
    "stamped before a seal, records the oldest such timestamp in view_history_dirty, so "
    "that the next refresh rebuilds that history.'"
)
HISTORY_TRIGGERS_V1 = statement_triggers("orb_learning_history", MARK_FUNCTION)
DROP_HISTORY_TRIGGERS_V1 = tuple(
    f"DROP TRIGGER IF EXISTS orb_learning_history_{event} ON executions"
    for event in ("insert", "update", "delete", "truncate")
)
DROP_MARK_HISTORY_DIRTY_V1 = f"DROP FUNCTION IF EXISTS {MARK_FUNCTION}()"


# --- revision 0009: pinned search_path, schema-qualified ----------------------------------
# Templates for format(), %1$I being the schema: the migration resolves it on the server
# (current_schema()), so the offline SQL of `alembic upgrade --sql` is right for any schema.
PINNED_SEARCH_PATH = "SET search_path = %1$I, pg_temp"
"""The ``SET`` clause of every routine of orb-learning: its schema, then ``pg_temp``
explicitly last (``pg_catalog`` is searched first when not listed)."""
MARK_HISTORY_DIRTY_V2 = _mark_function(
    f"CREATE OR REPLACE FUNCTION %1$I.{MARK_FUNCTION}() RETURNS trigger\n"
    f"LANGUAGE plpgsql SECURITY DEFINER {PINNED_SEARCH_PATH}",
    "%1$I.view_watermarks",
    f"%1$I.{HISTORY_DIRTY_TABLE}",
)
REVOKE_MARK_FROM_PUBLIC = f"REVOKE EXECUTE ON FUNCTION %1$I.{MARK_FUNCTION}() FROM PUBLIC"


def in_current_schema(*templates: str) -> str:
    """A DO block running each ``format()`` template with the current schema as ``%1$I``
    (the server quotes it). The templates are this package's constants, never input."""
    for template in templates:
        if "$template$" in template or "%" in template.replace("%1$I", ""):
            raise ValueError("a template may hold no other % directive and no $template$")
    steps = "\n".join(
        f"    EXECUTE format($template${t}$template$, current_schema());" for t in templates
    )
    return f"DO $in_schema$\nBEGIN\n{steps}\nEND\n$in_schema$"
