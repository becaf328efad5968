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
