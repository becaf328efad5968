"""Routines that live in the database, versioned like the views (see :mod:`views`).

``orb_learning_refresh_views()`` is the one refresh job: the app-side refresher, the
``orb-learning refresh`` command, ``LearningDatabase.refresh_views()`` and a pg_cron job all
call it, so the logic lives in one place and every refresh is logged.
"""

from __future__ import annotations

REFRESH_LOCK_KEY = 1869767276
"""Key of the transaction-scoped advisory lock that makes refreshes single-flight ('orbl')."""

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
