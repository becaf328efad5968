"""Sealed history (revision 0007): each analytics view split into a history and a recent part.

A refresh of a view that holds all history recomputes all history (12-15 s at 1,000,000
rows: docs/decisions/0002-sealed-history.md). So each per-repo view and its rollup over all
repos are now two materialized views: ``<base>_history_mv`` holds the executions before the
*seal* (the start of a UTC day, at least two days back), refreshed only when the seal moves
(about once a day) or when a row before it changed; ``<base>_recent_mv`` holds the
executions from the seal up to the watermark, refreshed every time. The name users know
(``tier_performance_mv`` ...) is a plain view over both with the same columns: a UNION ALL
for the time-bucketed views (a day or an hour never straddles a seal, which is the start of
a day), a merge of the two parts for the solution patterns (counts and sums added, rates
recomputed).

Each part's bound lives in ``view_watermarks`` under its own name: the history part's
watermark is the seal, the recent part's the live watermark (its lower bound is its history
part's watermark). A statement that writes executions stamped before a seal marks that
history dirty (``view_history_dirty``, one statement-level trigger per write, never per
row), so the next refresh rebuilds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ._ddl import MaterializedView, literal
from ._views import (
    POOL_PERFORMANCE_ALL_REPOS_V1,
    POOL_PERFORMANCE_V1,
    SOLUTION_PATTERNS_V1,
    TIER_PERFORMANCE_ALL_REPOS_V1,
    TIER_PERFORMANCE_V1,
)


@dataclass(frozen=True)
class SealedView:
    """The plain view users read, over its history and recent materialized parts."""

    name: str
    history: MaterializedView
    recent: MaterializedView
    select: str
    comment: str
    column_comments: dict[str, str] = field(default_factory=dict)
    merged: MaterializedView | None = None
    """When set, the name is this materialized view of the parts' merge (refreshed right
    after them) instead of a plain view: a merge read on every call cost too much."""

    @property
    def parts(self) -> tuple[MaterializedView, MaterializedView]:
        return (self.history, self.recent)

    @property
    def materialized(self) -> tuple[MaterializedView, ...]:
        """The materialized views behind the name, in refresh order."""
        return (*self.parts, *((self.merged,) if self.merged else ()))

    def create_statements(self) -> list[str]:
        """The view and its comments (the parts must exist first)."""
        if self.merged is not None:
            return self.merged.create_statements()
        statements = [
            f"CREATE VIEW {self.name} AS\n{self.select}",
            f"COMMENT ON VIEW {self.name} IS {literal(self.comment)}",
        ]
        statements += [
            f"COMMENT ON COLUMN {self.name}.{column} IS {literal(text)}"
            for column, text in self.column_comments.items()
        ]
        return statements

    def drop_statement(self) -> str:
        if self.merged is not None:
            return self.merged.drop_statement()
        return f"DROP VIEW IF EXISTS {self.name}"


SEAL_LAG_DAYS = 2
"""The seal is the start of the UTC day this many days back: rows arriving up to two days
late still land in the recent part, refreshed every time."""


def _bound(part: str) -> str:
    return f"(SELECT watermark FROM view_watermarks WHERE view_watermarks.view_name = '{part}')"


def _where(select: str, condition: str) -> str:
    """``select`` (one ``FROM executions``) restricted by ``condition``."""
    marker = "FROM executions\n"
    if f"{marker}WHERE " in select:
        return select.replace(f"{marker}WHERE ", f"{marker}WHERE {condition}\n  AND ", 1)
    return select.replace(marker, f"{marker}WHERE {condition}\n", 1)


_REFRESHED = " Refreshed by orb-learning (REFRESH MATERIALIZED VIEW CONCURRENTLY)."


def _comment(public: str, text: str) -> str:
    return f"Part of {public} (revision 0007): {text}" + _REFRESHED


def _split(
    view: MaterializedView, time_column: str | None
) -> tuple[MaterializedView, MaterializedView]:
    """The history and recent parts of a per-repo view over ``executions``."""
    base = view.name.removesuffix("_mv")
    history, recent = f"{base}_history_mv", f"{base}_recent_mv"

    def indexes(name: str) -> tuple[tuple[str, str], ...]:
        # revision 0004's time-bucket index, so that a window reads its buckets only
        return ((f"idx_{name}_{time_column}", time_column),) if time_column else ()

    history_view = replace(
        view,
        name=history,
        select=_where(view.select, f'"timestamp" < {_bound(history)}'),
        comment=_comment(
            view.name,
            "the executions before the seal (its watermark in view_watermarks, the start "
            "of a UTC day), refreshed when the seal moves or a row before it changed.",
        ),
        indexes=indexes(history),
    )
    recent_view = replace(
        view,
        name=recent,
        select=_where(
            view.select,
            f'"timestamp" >= {_bound(history)}\n  AND "timestamp" < {_bound(recent)}',
        ),
        comment=_comment(
            view.name,
            f"the executions from the seal ({history}'s watermark) up to its own "
            "watermark, refreshed every time; rows from the watermark on are added live.",
        ),
        indexes=indexes(recent),
    )
    return history_view, recent_view


def _rollup_split(
    rollup: MaterializedView, source: tuple[MaterializedView, MaterializedView]
) -> tuple[MaterializedView, MaterializedView]:
    """The rollup's parts, each summed from the same part of its per-repo source."""
    base = rollup.name.removesuffix("_mv")
    public_source = source[0].name.replace("_history_mv", "_mv")
    parts = []
    for kind, part in zip(("history", "recent"), source, strict=True):
        parts.append(
            replace(
                rollup,
                name=f"{base}_{kind}_mv",
                select=rollup.select.replace(f"FROM {public_source}\n", f"FROM {part.name}\n"),
                comment=_comment(
                    rollup.name,
                    f"{part.name} summed over all repos (same bounds, refreshed with it).",
                ),
            )
        )
    return parts[0], parts[1]


def _union(
    name: str,
    parts: tuple[MaterializedView, MaterializedView],
    comment: str,
    column_comments: dict[str, str],
) -> SealedView:
    # Buckets are whole days or hours and the seal the start of a day: never in both parts.
    select = f"SELECT * FROM {parts[0].name}\nUNION ALL\nSELECT * FROM {parts[1].name}"
    return SealedView(name, parts[0], parts[1], select, comment, column_comments)


_SEALED_NOTE = (
    " A view over {history} (executions before the seal, the start of a UTC day at least "
    "two days back) and {recent} (from the seal up to the watermark in view_watermarks); "
    "rows from the watermark on are added live by the API."
)


def _public_comment(view: MaterializedView, parts: tuple[MaterializedView, ...]) -> str:
    note = _SEALED_NOTE.format(history=parts[0].name, recent=parts[1].name)
    head = view.comment.split(" Holds ")[0].split(" Refreshed by")[0]
    return head + note + " Refreshed by orb-learning."


_TIER_PARTS = _split(TIER_PERFORMANCE_V1, "date")
_POOL_PARTS = _split(POOL_PERFORMANCE_V1, "hour")
_PATTERN_PARTS = _split(SOLUTION_PATTERNS_V1, None)
_TIER_ALL_PARTS = _rollup_split(TIER_PERFORMANCE_ALL_REPOS_V1, _TIER_PARTS)
_POOL_ALL_PARTS = _rollup_split(POOL_PERFORMANCE_ALL_REPOS_V1, _POOL_PARTS)

TIER_PERFORMANCE_V3 = _union(
    "tier_performance_mv",
    _TIER_PARTS,
    _public_comment(TIER_PERFORMANCE_V1, _TIER_PARTS),
    TIER_PERFORMANCE_V1.column_comments,
)
POOL_PERFORMANCE_V3 = _union(
    "pool_performance_mv",
    _POOL_PARTS,
    _public_comment(POOL_PERFORMANCE_V1, _POOL_PARTS),
    POOL_PERFORMANCE_V1.column_comments,
)
TIER_PERFORMANCE_ALL_REPOS_V2 = _union(
    "tier_performance_all_repos_mv",
    _TIER_ALL_PARTS,
    _public_comment(TIER_PERFORMANCE_ALL_REPOS_V1, _TIER_ALL_PARTS),
    TIER_PERFORMANCE_ALL_REPOS_V1.column_comments,
)
POOL_PERFORMANCE_ALL_REPOS_V2 = _union(
    "pool_performance_all_repos_mv",
    _POOL_ALL_PARTS,
    _public_comment(POOL_PERFORMANCE_ALL_REPOS_V1, _POOL_ALL_PARTS),
    POOL_PERFORMANCE_ALL_REPOS_V1.column_comments,
)

# Patterns span all history, so a pattern may be in both parts: merged from their
# additive parts (a FULL JOIN: each part has at most one row per pattern and repo).
_PATTERNS_SELECT = f"""\
SELECT pattern_id,
       coalesce(h.solution_summary, r.solution_summary) AS solution_summary,
       repo,
       t.usage_count,
       t.success_count,
       t.success_count::double precision / t.usage_count AS success_rate,
       t.sum_quality,
       t.quality_count,
       (t.sum_quality::numeric / nullif(t.quality_count, 0))::double precision AS avg_quality,
       ARRAY(SELECT DISTINCT u.task_type
             FROM unnest(coalesce(h.task_types, '{{}}') || coalesce(r.task_types, '{{}}'))
                  AS u(task_type)
             ORDER BY u.task_type) AS task_types,
       least(h.first_seen, r.first_seen) AS first_seen,
       greatest(h.last_seen, r.last_seen) AS last_seen
FROM {_PATTERN_PARTS[0].name} h
FULL JOIN {_PATTERN_PARTS[1].name} r USING (pattern_id, repo)
CROSS JOIN LATERAL (
    SELECT coalesce(h.usage_count, 0) + coalesce(r.usage_count, 0) AS usage_count,
           coalesce(h.success_count, 0) + coalesce(r.success_count, 0) AS success_count,
           CASE WHEN h.sum_quality IS NOT NULL OR r.sum_quality IS NOT NULL
                THEN coalesce(h.sum_quality, 0) + coalesce(r.sum_quality, 0) END AS sum_quality,
           coalesce(h.quality_count, 0) + coalesce(r.quality_count, 0) AS quality_count
) AS t"""
_PATTERNS_COMMENT = (
    _public_comment(SOLUTION_PATTERNS_V1, _PATTERN_PARTS)
    .replace("A view over", "The merge of")
    .replace(" Refreshed by orb-learning.", _REFRESHED)
)
SOLUTION_PATTERNS_V3 = SealedView(
    "solution_patterns_mv",
    _PATTERN_PARTS[0],
    _PATTERN_PARTS[1],
    _PATTERNS_SELECT,
    _PATTERNS_COMMENT,
    SOLUTION_PATTERNS_V1.column_comments,
    merged=replace(
        SOLUTION_PATTERNS_V1,
        select=_PATTERNS_SELECT + "\nWITH DATA",
        comment=_PATTERNS_COMMENT,
    ),
)

SEALED_VIEWS: tuple[SealedView, ...] = (
    TIER_PERFORMANCE_V3,
    TIER_PERFORMANCE_ALL_REPOS_V2,
    POOL_PERFORMANCE_V3,
    POOL_PERFORMANCE_ALL_REPOS_V2,
    SOLUTION_PATTERNS_V3,
)
"""The views users read at head (plain views), each rollup after its source."""

SEALED_ROLLUPS: dict[str, SealedView] = {
    TIER_PERFORMANCE_V3.name: TIER_PERFORMANCE_ALL_REPOS_V2,
    POOL_PERFORMANCE_V3.name: POOL_PERFORMANCE_ALL_REPOS_V2,
}
"""Each per-repo view's rollup over all repos, refreshed right after it."""

SEALED_PARTS: tuple[MaterializedView, ...] = tuple(
    part for view in SEALED_VIEWS for part in view.materialized
)
"""The materialized views at head: history and recent part of each view (and the merge of
the solution patterns' parts)."""

HISTORY_PARTS: tuple[str, ...] = tuple(
    view.history.name for view in SEALED_VIEWS if view.name not in
    {rollup.name for rollup in SEALED_ROLLUPS.values()}
)  # fmt: skip
"""The history parts a write before the seal makes dirty (a rollup's follows its source)."""
