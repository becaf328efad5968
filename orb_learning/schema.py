"""The schema's single source of truth: SQLAlchemy Core metadata.

Alembic autogenerates against this metadata and ``alembic check`` compares it with the
database. The materialized views are not tables, so their SQL lives in
:mod:`orb_learning._views`, versioned, and the migrations create them from there.
"""

from __future__ import annotations

from pgvector.sqlalchemy import HALFVEC
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from .config import EMBEDDING_DIMENSION
from .models import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, MAX_KEY_LENGTH, MAX_MEASURE

# The bounds of a stored row (revision 0009), from the models' constants: a row psql
# writes is held to what the API validates, so no row can break a refresh.
TIMESTAMP_RANGE = (
    f"\"timestamp\" >= '{EARLIEST_TIMESTAMP.isoformat()}' "
    f"AND \"timestamp\" < '{LATEST_TIMESTAMP.isoformat()}'"
)
MEASURES = (
    "duration_seconds",
    "cost_estimate",
    "actual_cost",
    "peak_memory_mb",
    "cpu_time_seconds",
)
MEASURES_BOUNDED = " AND ".join(f"{column} <= {MAX_MEASURE:.0e}" for column in MEASURES)
KEYS = ("repo", "task_type", "model_tier", "pool_type")
KEYS_LENGTH = " AND ".join(f"char_length({column}) <= {MAX_KEY_LENGTH}" for column in KEYS)

HNSW_M = 16
HNSW_EF_CONSTRUCTION = 128
"""m is pgvector's default; ef_construction twice its default (revision 0008): with 64 no
ef_search got a million clustered rows past recall 0.94 (docs/decisions/0001-halfvec.md)."""

NAMING_CONVENTION = {
    "ix": "idx_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "pk": "pk_%(table_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

executions = Table(
    "executions",
    metadata,
    Column(
        "task_id",
        Uuid,
        primary_key=True,
        comment="Task identifier (UUID), the upsert key: kept unique by execution_keys, "
        "across partitions too",
    ),
    Column(
        "timestamp",
        DateTime(timezone=True),
        primary_key=True,
        comment="When the task ran (timestamptz, UTC in the API); the partition key once "
        "partitioned",
    ),
    Column("task_type", Text, nullable=False, comment="Kind of task: refactor, test, review..."),
    Column("task_description", Text, nullable=False, comment="The task in natural language"),
    Column("repo", Text, nullable=False, comment="Repository: the isolation key of learning"),
    Column("file_count", Integer, nullable=False, server_default="0", comment="Files touched"),
    Column(
        "estimated_tokens",
        Integer,
        nullable=False,
        server_default="0",
        comment="Tokens the router expected the task to take",
    ),
    Column("model_tier", Text, nullable=False, comment="Model tier the router chose"),
    Column("pool_type", Text, nullable=False, comment="Worker pool that ran the task"),
    Column("swarm_topology", Text, comment="Swarm topology (star, mesh...), NULL when none"),
    Column(
        "routing_confidence",
        Double,
        nullable=False,
        comment="Router confidence in its decision, 0.0-1.0",
    ),
    Column(
        "complexity_score",
        Integer,
        nullable=False,
        server_default="50",
        comment="Router's complexity estimate, 0-100",
    ),
    Column("success", Boolean, nullable=False, comment="Whether the task succeeded"),
    Column("duration_seconds", Double, nullable=False, comment="Wall-clock duration, seconds"),
    Column("quality_score", Integer, comment="Quality-gate score 0-100, NULL when not measured"),
    Column("cost_estimate", Double, nullable=False, comment="Cost the router predicted, USD"),
    Column("actual_cost", Double, nullable=False, comment="Cost actually incurred, USD"),
    Column("error_type", Text, comment="timeout, quality_gate, crash, validation, unknown..."),
    Column("error_message", Text, comment="Error text, NULL on success"),
    Column("user_accepted", Boolean, comment="Whether the user accepted the result (feedback)"),
    Column("user_rating", Integer, comment="User rating 1-5 (latest feedback)"),
    Column("peak_memory_mb", Double, comment="Peak memory of the worker, MB"),
    Column("cpu_time_seconds", Double, comment="CPU time of the worker, seconds"),
    Column("solution_summary", Text, comment="Short summary of the solution: the pattern key"),
    Column(
        "embedding",
        HALFVEC(EMBEDDING_DIMENSION),
        comment="all-MiniLM-L6-v2 embedding of task_description, half precision "
        "(unit length, cosine)",
    ),
    Column(
        "metadata",
        JSONB,
        nullable=False,
        server_default=text("'{}'::jsonb"),
        comment="Free-form JSON from the producer",
    ),
    Column(
        "uploaded_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=func.now(),
        comment="When the row was last written",
    ),
    Column(
        "recommendation_id",
        Uuid,
        comment="The route recommendation the router asked for first (route_recommendations), "
        "NULL when none",
    ),
    CheckConstraint("routing_confidence BETWEEN 0 AND 1", name="routing_confidence_range"),
    CheckConstraint("complexity_score BETWEEN 0 AND 100", name="complexity_score_range"),
    CheckConstraint("quality_score BETWEEN 0 AND 100", name="quality_score_range"),
    CheckConstraint("user_rating BETWEEN 1 AND 5", name="user_rating_range"),
    CheckConstraint("file_count >= 0", name="file_count_nonnegative"),
    CheckConstraint("estimated_tokens >= 0", name="estimated_tokens_nonnegative"),
    CheckConstraint("duration_seconds >= 0", name="duration_nonnegative"),
    CheckConstraint("cost_estimate >= 0 AND actual_cost >= 0", name="costs_nonnegative"),
    CheckConstraint("peak_memory_mb >= 0", name="peak_memory_nonnegative"),
    CheckConstraint("cpu_time_seconds >= 0", name="cpu_time_nonnegative"),
    CheckConstraint(TIMESTAMP_RANGE, name="timestamp_range"),
    CheckConstraint(MEASURES_BOUNDED, name="measures_bounded"),
    CheckConstraint(KEYS_LENGTH, name="keys_length"),
    comment=(
        "One row per task execution routed by the orchestrator: what the task was, which "
        "tier and pool ran it, and how it went. Written by orb-learning (upsert by task_id). "
        "One table, or range-partitioned by timestamp once converted (orb-learning db "
        "partitions --convert)."
    ),
)

Index(
    "idx_executions_repo_task",
    executions.c.repo,
    executions.c.task_type,
    executions.c.timestamp.desc(),
)
Index(
    "idx_executions_tier_success",
    executions.c.model_tier,
    executions.c.success,
    executions.c.timestamp.desc(),
)
Index(
    "idx_executions_pool_duration",
    executions.c.pool_type,
    executions.c.success,
    executions.c.duration_seconds,
)
Index(
    "idx_executions_quality_trend",
    executions.c.repo,
    executions.c.quality_score,
    executions.c.timestamp.desc(),
)
Index("idx_executions_timestamp", executions.c.timestamp)
Index(  # the recommendations' outcomes (revision 0010): most executions have none
    "idx_executions_recommendation_id",
    executions.c.recommendation_id,
    postgresql_where=executions.c.recommendation_id.isnot(None),
)
Index(  # on the half-precision column (revision 0008; 0006 built it on a cast)
    "idx_executions_embedding_hnsw",
    executions.c.embedding,
    postgresql_using="hnsw",
    postgresql_with={"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION},
    postgresql_ops={"embedding": "halfvec_cosine_ops"},
)

execution_keys = Table(  # revision 0011
    "execution_keys",
    metadata,
    Column("task_id", Uuid, primary_key=True, comment="A task_id stored in executions"),
    Column(
        "timestamp",
        DateTime(timezone=True),
        nullable=False,
        comment="Its execution's timestamp: the partition holding it",
    ),
    comment="One row per execution: keeps task_id unique across the partitions of executions "
    "(a partitioned table's keys must include the partition key), kept by the statement "
    "triggers of executions; feedback references it.",
)
Index("idx_execution_keys_timestamp", execution_keys.c.timestamp)

view_watermarks = Table(
    "view_watermarks",
    metadata,
    Column("view_name", Text, primary_key=True, comment="A materialized view of orb-learning"),
    Column(
        "watermark",
        DateTime(timezone=True),
        nullable=False,
        server_default=text("'-infinity'"),
        comment="The view holds the executions before this instant; analytics with "
        "fresh=True add the rows from it on, live",
    ),
    comment="Per analytics view, the instant up to which it is materialized "
    "(moved by orb_learning_refresh_views()).",
)

view_history_dirty = Table(  # revision 0007 (its migration creates it from routines.py)
    "view_history_dirty",
    metadata,
    Column("view_name", Text, primary_key=True, comment="The history part"),
    Column(
        "since",
        DateTime(timezone=True),
        nullable=False,
        comment="The oldest timestamp written, changed or deleted before the seal",
    ),
    Column(
        "marked_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=func.now(),
        comment="When it was first marked",
    ),
    comment="History parts (<view>_history_mv) that no longer match the executions: a "
    "statement wrote, changed or deleted executions stamped before their seal since their "
    "last refresh. The next orb_learning_refresh_views() rebuilds them and removes the row.",
)

view_refresh_log = Table(
    "view_refresh_log",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("view_name", Text, nullable=False, comment="The view refreshed"),
    Column("started_at", DateTime(timezone=True), nullable=False, comment="Refresh start"),
    Column("finished_at", DateTime(timezone=True), comment="Refresh end"),
    Column("rows", BigInteger, comment="Rows in the view after the refresh"),
    Column("status", Text, nullable=False, comment="success or failed"),
    Column("error", Text, comment="SQLSTATE and message of a failed refresh"),
    Column(
        "watermark",
        DateTime(timezone=True),
        comment="The view's watermark after this refresh",
    ),
    CheckConstraint("status IN ('success', 'failed')", name="status_known"),
    comment="One row per refresh of an analytics view, successful or not "
    "(written by orb_learning_refresh_views() and by the refresher on failures).",
)
Index(
    "idx_view_refresh_log_view_finished",
    view_refresh_log.c.view_name,
    view_refresh_log.c.finished_at.desc(),
)

feedback = Table(
    "feedback",
    metadata,
    Column("feedback_id", Uuid, primary_key=True, comment="Feedback identifier (UUID)"),
    Column(
        "task_id",
        Uuid,
        ForeignKey("execution_keys.task_id", ondelete="CASCADE"),
        nullable=False,
        comment="The execution rated; feedback goes with it when it is deleted",
    ),
    Column("timestamp", DateTime(timezone=True), nullable=False, comment="When it was given"),
    Column("feedback_type", Text, nullable=False, comment="thumbs_up, thumbs_down, rating..."),
    Column("rating", Integer, nullable=False, comment="Rating 1-5"),
    Column("comment", Text, comment="Free text"),
    Column("user_id", Uuid, comment="Who gave it; NULL when anonymous (the default)"),
    Column(
        "recorded_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=func.now(),
        comment="When the row was written",
    ),
    CheckConstraint("rating BETWEEN 1 AND 5", name="rating_range"),
    CheckConstraint(TIMESTAMP_RANGE, name="timestamp_range"),
    CheckConstraint("feedback_type <> ''", name="feedback_type_not_empty"),
    comment="User feedback on executions, several per execution allowed; the latest sets "
    "executions.user_rating and user_accepted.",
)
Index("idx_feedback_task_time", feedback.c.task_id, feedback.c.timestamp.desc())

telemetry_dead_letters = Table(
    "telemetry_dead_letters",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("task_id", Uuid, comment="The task the events were about, when known"),
    Column("reason", Text, nullable=False, comment="Why the events could not be stored"),
    Column("events", JSONB, nullable=False, comment="The raw events, as captured"),
    Column(
        "first_seen_at",
        DateTime(timezone=True),
        nullable=False,
        comment="When the first of these events was captured",
    ),
    Column(
        "created_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=func.now(),
        comment="When the dead letter was written",
    ),
    comment="Telemetry that could not become an execution (a half that never met its "
    "other half within orphan_ttl, feedback for an unknown task...), kept for inspection.",
)
Index(
    "uq_telemetry_dead_letters_event",
    telemetry_dead_letters.c.task_id,
    telemetry_dead_letters.c.reason,
    telemetry_dead_letters.c.first_seen_at,
    unique=True,
    postgresql_nulls_not_distinct=True,
)

route_recommendations = Table(  # revision 0010
    "route_recommendations",
    metadata,
    Column("recommendation_id", Uuid, primary_key=True, comment="Returned to the caller"),
    Column(
        "created_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=func.now(),
        comment="When it was made",
    ),
    Column("task_description", Text, nullable=False, comment="The task (secrets redacted)"),
    Column("task_type", Text, comment="The task type asked with, NULL when none"),
    Column("repo", Text, comment="The repo filter, NULL for all repos"),
    Column("complexity_score", Integer, comment="The router's complexity estimate, if given"),
    Column("days_back", Integer, comment="The history window in days, NULL for all history"),
    Column(
        "objective",
        Text,
        nullable=False,
        comment="success (most likely), min_success (cheapest likely enough) or cost_weight",
    ),
    Column("min_success", Double, comment="The min_success asked for"),
    Column("cost_weight", Double, comment="The cost weight (success per USD) asked for"),
    Column("explore", Boolean, nullable=False, comment="Chosen by Thompson sampling"),
    Column("fallback", Boolean, nullable=False, comment="No history: the caller's first option"),
    Column("chosen_tier", Text, comment="The model tier recommended"),
    Column("chosen_pool", Text, comment="The pool recommended"),
    Column("expected_success", Double, comment="The chosen option's expected success"),
    Column("expected_cost", Double, comment="The chosen option's expected cost, USD"),
    Column(
        "options",
        JSONB,
        nullable=False,
        comment="Every option with its estimates and score, ranked",
    ),
    CheckConstraint(
        "objective IN ('success', 'min_success', 'cost_weight')", name="objective_known"
    ),
    comment="One row per recommend_route() call (log=True): what was recommended, with what "
    "estimates. route_recommendation_outcomes joins it with the executions that followed.",
)
Index(
    "idx_route_recommendations_created_at",
    route_recommendations.c.created_at,
)
