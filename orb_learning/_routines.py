"""Routines that live in the database, versioned like the views (see :mod:`._views`).

``orb_learning_refresh_views()`` is the one refresh job: the app-side refresher, the
``orb-learning refresh`` command, ``LearningDatabase.refresh_views()`` and a pg_cron job all
call it, so the logic lives in one place and every refresh is logged.
"""

from __future__ import annotations

from ._history_marks import MARK_FUNCTION

REFRESH_LOCK_KEY = 1869767276
"""Key of the transaction-scoped advisory lock that makes refreshes single-flight ('orbl')."""
MIGRATION_LOCK_KEY = 1869770093
"""Key of the session advisory lock that serialises migrations (alembic/env.py): deploys
start several replicas at once, each running ``alembic upgrade head``."""

REFRESH_FUNCTION = "orb_learning_refresh_views"

REFRESH_VIEWS_V1 = f"""\
CREATE FUNCTION {REFRESH_FUNCTION}(
    min_age interval DEFAULT interval '0 seconds',
    watermark_lag interval DEFAULT interval '1 minute',
    wait boolean DEFAULT false
)
RETURNS TABLE (view_name text, status text, rows bigint, started_at timestamptz,
               finished_at timestamptz, watermark timestamptz, error text)
LANGUAGE plpgsql
AS $function$
DECLARE
    v text;
    new_watermark timestamptz := now() - watermark_lag;
BEGIN
    -- Single flight, in this transaction: also holds behind PgBouncer in transaction mode.
    IF wait THEN
        PERFORM pg_advisory_xact_lock({REFRESH_LOCK_KEY});
    ELSIF NOT pg_try_advisory_xact_lock({REFRESH_LOCK_KEY}) THEN
        view_name := NULL; status := 'locked';
        RETURN NEXT;
        RETURN;
    END IF;
    FOREACH v IN ARRAY ARRAY['tier_performance_mv', 'pool_performance_mv',
                             'solution_patterns_mv'] LOOP
        view_name := v; rows := NULL; error := NULL; watermark := NULL;
        started_at := NULL; finished_at := NULL;
        IF min_age > interval '0 seconds' AND EXISTS (
            SELECT 1 FROM view_refresh_log l
            WHERE l.view_name = v AND l.status = 'success'
              AND l.finished_at > clock_timestamp() - min_age
        ) THEN
            status := 'fresh';  -- refreshed less than min_age ago: skipped
            RETURN NEXT;
            CONTINUE;
        END IF;
        started_at := clock_timestamp();
        BEGIN
            UPDATE view_watermarks w SET watermark = greatest(w.watermark, new_watermark)
            WHERE w.view_name = v
            RETURNING w.watermark INTO watermark;
            EXECUTE format('REFRESH MATERIALIZED VIEW CONCURRENTLY %I', v);
            EXECUTE format('SELECT count(*) FROM %I', v) INTO rows;
            status := 'success';
        EXCEPTION WHEN OTHERS THEN
            status := 'failed';
            error := SQLSTATE || ': ' || SQLERRM;
            watermark := NULL;
        END;
        finished_at := clock_timestamp();
        INSERT INTO view_refresh_log
            (view_name, started_at, finished_at, rows, status, error, watermark)
        VALUES (v, started_at, finished_at, rows, status, error, watermark);
        RETURN NEXT;
    END LOOP;
END
$function$"""

REFRESH_VIEWS_V1_COMMENT = (
    f"COMMENT ON FUNCTION {REFRESH_FUNCTION}(interval, interval, boolean) IS "
    "'Refreshes the three analytics views CONCURRENTLY, single-flight (advisory lock), "
    "skipping views refreshed successfully less than min_age ago, moving each watermark "
    "to now() - watermark_lag, and logging every refresh in view_refresh_log. "
    "Returns one row per view (status success, failed or fresh), or one row with "
    "status locked when another refresh holds the lock and wait is false.'"
)

DROP_REFRESH_VIEWS_V1 = f"DROP FUNCTION IF EXISTS {REFRESH_FUNCTION}(interval, interval, boolean)"

REFRESH_VIEWS_V2 = f"""\
CREATE OR REPLACE FUNCTION {REFRESH_FUNCTION}(
    min_age interval DEFAULT interval '0 seconds',
    watermark_lag interval DEFAULT interval '1 minute',
    wait boolean DEFAULT false
)
RETURNS TABLE (view_name text, status text, rows bigint, started_at timestamptz,
               finished_at timestamptz, watermark timestamptz, error text)
LANGUAGE plpgsql
AS $function$
DECLARE
    v text;
    rollup text;
    rollup_rows bigint;
    rollup_started timestamptz;
    new_watermark timestamptz := now() - watermark_lag;
BEGIN
    -- Single flight, in this transaction: also holds behind PgBouncer in transaction mode.
    IF wait THEN
        PERFORM pg_advisory_xact_lock({REFRESH_LOCK_KEY});
    ELSIF NOT pg_try_advisory_xact_lock({REFRESH_LOCK_KEY}) THEN
        view_name := NULL; status := 'locked';
        RETURN NEXT;
        RETURN;
    END IF;
    FOREACH v IN ARRAY ARRAY['tier_performance_mv', 'pool_performance_mv',
                             'solution_patterns_mv'] LOOP
        -- A per-repo view's rollup over all repos is refreshed with it, in the same
        -- subtransaction: both move to the same watermark, or neither does.
        rollup := CASE v WHEN 'tier_performance_mv' THEN 'tier_performance_all_repos_mv'
                         WHEN 'pool_performance_mv' THEN 'pool_performance_all_repos_mv' END;
        view_name := v; rows := NULL; error := NULL; watermark := NULL;
        started_at := NULL; finished_at := NULL; rollup_rows := NULL; rollup_started := NULL;
        IF min_age > interval '0 seconds' AND EXISTS (
            SELECT 1 FROM view_refresh_log l
            WHERE l.view_name = v AND l.status = 'success'
              AND l.finished_at > clock_timestamp() - min_age
        ) THEN
            status := 'fresh';  -- refreshed less than min_age ago: skipped
            RETURN NEXT;
            IF rollup IS NOT NULL THEN
                view_name := rollup;
                RETURN NEXT;
            END IF;
            CONTINUE;
        END IF;
        started_at := clock_timestamp();
        BEGIN
            UPDATE view_watermarks w SET watermark = greatest(w.watermark, new_watermark)
            WHERE w.view_name = v
            RETURNING w.watermark INTO watermark;
            UPDATE view_watermarks w SET watermark = source.watermark
            FROM view_watermarks source
            WHERE source.view_name = v AND w.view_name = rollup;
            EXECUTE format('REFRESH MATERIALIZED VIEW CONCURRENTLY %I', v);
            EXECUTE format('SELECT count(*) FROM %I', v) INTO rows;
            finished_at := clock_timestamp();
            IF rollup IS NOT NULL THEN
                rollup_started := finished_at;
                EXECUTE format('REFRESH MATERIALIZED VIEW CONCURRENTLY %I', rollup);
                EXECUTE format('SELECT count(*) FROM %I', rollup) INTO rollup_rows;
            END IF;
            status := 'success';
        EXCEPTION WHEN OTHERS THEN
            status := 'failed';
            error := SQLSTATE || ': ' || SQLERRM;
            watermark := NULL; rows := NULL; rollup_rows := NULL;
            finished_at := NULL; rollup_started := NULL;
        END;
        finished_at := coalesce(finished_at, clock_timestamp());
        INSERT INTO view_refresh_log
            (view_name, started_at, finished_at, rows, status, error, watermark)
        VALUES (v, started_at, finished_at, rows, status, error, watermark);
        RETURN NEXT;
        IF rollup IS NOT NULL THEN
            view_name := rollup; rows := rollup_rows;
            started_at := coalesce(rollup_started, started_at);
            finished_at := clock_timestamp();
            INSERT INTO view_refresh_log
                (view_name, started_at, finished_at, rows, status, error, watermark)
            VALUES (rollup, started_at, finished_at, rows, status, error, watermark);
            RETURN NEXT;
        END IF;
    END LOOP;
END
$function$"""

REFRESH_VIEWS_V2_COMMENT = (
    f"COMMENT ON FUNCTION {REFRESH_FUNCTION}(interval, interval, boolean) IS "
    "'Refreshes the analytics views CONCURRENTLY, single-flight (advisory lock), "
    "skipping views refreshed successfully less than min_age ago, moving each watermark "
    "to now() - watermark_lag, and logging every refresh in view_refresh_log. "
    "tier_performance_all_repos_mv and pool_performance_all_repos_mv are refreshed right "
    "after their per-repo view, in the same subtransaction (same watermark, or neither). "
    "Returns one row per view (status success, failed or fresh), or one row with "
    "status locked when another refresh holds the lock and wait is false.'"
)

# --- revision 0007: sealed history (the marks' trigger is in history_marks) ----------------
SEAL_LAG = "interval '2 days'"  # sealed.SEAL_LAG_DAYS
REFRESH_VIEWS_V3 = f"""\
CREATE OR REPLACE FUNCTION {REFRESH_FUNCTION}(
    min_age interval DEFAULT interval '0 seconds',
    watermark_lag interval DEFAULT interval '1 minute',
    wait boolean DEFAULT false
)
RETURNS TABLE (view_name text, status text, rows bigint, started_at timestamptz,
               finished_at timestamptz, watermark timestamptz, error text)
LANGUAGE plpgsql
AS $function$
DECLARE
    base text;
    rollup text;
    merged text;             -- a materialized merge of the parts, refreshed after them
    part text;
    history text[];          -- the history parts of base and of its rollup
    parts text[];            -- the parts refreshed this time, in order
    counts bigint[];
    starts timestamptz[];
    ends timestamptz[];
    marks timestamptz[];
    failure text;
    sealing boolean;
    began timestamptz;
    i integer;
    new_watermark timestamptz := now() - watermark_lag;
    -- The start of a UTC day at least two days back (and never past the watermark).
    new_seal timestamptz := least(date_trunc('day', now() - {SEAL_LAG}, 'UTC'),
                                  date_trunc('day', now() - watermark_lag, 'UTC'));
BEGIN
    -- Single flight, in this transaction: also holds behind PgBouncer in transaction mode.
    IF wait THEN
        PERFORM pg_advisory_xact_lock({REFRESH_LOCK_KEY});
    ELSIF NOT pg_try_advisory_xact_lock({REFRESH_LOCK_KEY}) THEN
        view_name := NULL; status := 'locked';
        RETURN NEXT;
        RETURN;
    END IF;
    FOREACH base IN ARRAY ARRAY['tier_performance', 'pool_performance',
                                'solution_patterns'] LOOP
        rollup := CASE base WHEN 'tier_performance' THEN 'tier_performance_all_repos'
                            WHEN 'pool_performance' THEN 'pool_performance_all_repos' END;
        merged := CASE base WHEN 'solution_patterns' THEN 'solution_patterns_mv' END;
        history := array_remove(ARRAY[base || '_history_mv', rollup || '_history_mv'], NULL);
        -- The history is rebuilt when its seal is due to move (about once a day) or a
        -- statement changed executions before it; otherwise only the recent parts are.
        sealing := EXISTS (SELECT 1 FROM view_watermarks w
                           WHERE w.view_name = history[1] AND w.watermark < new_seal)
                   OR EXISTS (SELECT 1 FROM view_history_dirty d
                              WHERE d.view_name = history[1]);
        parts := array_remove(ARRAY[
            CASE WHEN sealing THEN history[1] END, base || '_recent_mv',
            CASE WHEN sealing THEN history[2] END, rollup || '_recent_mv', merged], NULL);
        view_name := NULL; rows := NULL; error := NULL; watermark := NULL;
        started_at := NULL; finished_at := NULL;
        IF min_age > interval '0 seconds' AND EXISTS (
            SELECT 1 FROM view_refresh_log l
            WHERE l.view_name = base || '_recent_mv' AND l.status = 'success'
              AND l.finished_at > clock_timestamp() - min_age
        ) THEN
            status := 'fresh';  -- refreshed less than min_age ago: skipped
            FOREACH view_name IN ARRAY history || array_remove(
                    ARRAY[base || '_recent_mv', rollup || '_recent_mv', merged], NULL) LOOP
                RETURN NEXT;
            END LOOP;
            CONTINUE;
        END IF;
        counts := '{{}}'; starts := '{{}}'; ends := '{{}}'; marks := '{{}}';
        failure := NULL;
        began := clock_timestamp();
        -- A view's parts and its rollup's move together, or none does.
        BEGIN
            IF sealing THEN
                -- The seal first: its row lock orders this refresh with the writers of old
                -- rows (see {MARK_FUNCTION}), then the marks it answers are cleared.
                UPDATE view_watermarks w SET watermark = greatest(w.watermark, new_seal)
                WHERE w.view_name = ANY (history);
                DELETE FROM view_history_dirty d WHERE d.view_name = history[1];
            END IF;
            UPDATE view_watermarks w SET watermark = greatest(w.watermark, new_watermark)
            WHERE w.view_name IN (base || '_recent_mv', rollup || '_recent_mv', merged);
            FOR i IN 1 .. array_length(parts, 1) LOOP
                starts[i] := clock_timestamp();
                EXECUTE format('REFRESH MATERIALIZED VIEW CONCURRENTLY %I', parts[i]);
                EXECUTE format('SELECT count(*) FROM %I', parts[i]) INTO rows;
                SELECT w.watermark INTO watermark FROM view_watermarks w
                WHERE w.view_name = parts[i];
                counts[i] := rows; marks[i] := watermark; ends[i] := clock_timestamp();
            END LOOP;
        EXCEPTION WHEN OTHERS THEN
            failure := SQLSTATE || ': ' || SQLERRM;
        END;
        FOR i IN 1 .. array_length(parts, 1) LOOP
            view_name := parts[i];
            IF failure IS NULL THEN
                status := 'success'; rows := counts[i]; watermark := marks[i];
                started_at := starts[i]; finished_at := ends[i]; error := NULL;
            ELSE
                status := 'failed'; rows := NULL; watermark := NULL; error := failure;
                started_at := coalesce(starts[i], began); finished_at := clock_timestamp();
            END IF;
            INSERT INTO view_refresh_log
                (view_name, started_at, finished_at, rows, status, error, watermark)
            VALUES (parts[i], started_at, finished_at, rows, status, error, watermark);
            RETURN NEXT;
        END LOOP;
        IF NOT sealing THEN
            -- History left as it is (not logged): its seal did not move, nothing before
            -- it changed.
            status := 'sealed'; rows := NULL; error := NULL;
            started_at := NULL; finished_at := NULL;
            FOREACH part IN ARRAY history LOOP
                view_name := part;
                SELECT w.watermark INTO watermark FROM view_watermarks w
                WHERE w.view_name = part;
                RETURN NEXT;
            END LOOP;
        END IF;
    END LOOP;
END
$function$"""

REFRESH_VIEWS_V3_COMMENT = (
    f"COMMENT ON FUNCTION {REFRESH_FUNCTION}(interval, interval, boolean) IS "
    "'Refreshes the analytics views CONCURRENTLY, single-flight (advisory lock), "
    "skipping views refreshed successfully less than min_age ago. Each view is a history "
    "part (executions before its seal, the start of the UTC day two days back) and a recent "
    "part (from the seal to the watermark, moved to now() - watermark_lag): the recent "
    "parts are refreshed every time, a history part only when its seal moves or "
    "view_history_dirty marks it. A per-repo view and its rollup over all repos move "
    "together in one subtransaction; solution_patterns_mv, the merge of its two parts, is "
    "refreshed right after them. Logs each part refreshed in view_refresh_log and "
    "returns one row per part (status success, failed, fresh, or sealed for a history "
    "left as it was), or one row with status locked when another refresh holds the lock "
    "and wait is false.'"
)
