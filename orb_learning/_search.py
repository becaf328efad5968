"""Semantic search: the executions nearest a query embedding, by cosine similarity.

Two paths, chosen per query from the planner's row estimate for the repo and time filters
(read at most once a minute per filter, :class:`PlannerEstimates`):

* **exact**: when few rows pass the filters (a rare repo, a short window, a small table),
  they are read through the btree indexes and every one is compared: perfect recall, and
  faster than walking the graph for a needle. "Few" grows with the table, 14 x the square
  root of its rows (at least 1,000), where the two paths cost the same in the benchmark
  (docs/decisions/0003-exact-or-hnsw-path.md).
* **HNSW**: otherwise, the HNSW index on the half-precision ``embedding`` column with
  pgvector 0.8's iterative scan (``relaxed_order``), so that filtered rows keep coming
  until enough are found, and an ``ef_search`` that grows with the square root of the
  table's rows beyond 100,000, since a filtered search walks the whole graph too. It yields
  ``candidates_per_result * k`` candidates, put back in exact similarity order (relaxed
  order returns them only roughly sorted) and cut to ``k``; the threshold is applied
  *outside* that scan (a MATERIALIZED CTE), so a query whose answer is empty stops after
  the candidates. If the scan ran out first (``hnsw.max_scan_tuples`` reached on a sparse
  filter) and the answer is short of ``k``, the exact path answers: never fewer rows than
  the exact answer.
* **check**: the walk can settle in a neighbouring group of similar executions and return
  none of the exact ten, so each HNSW answer is checked against a random sample of the
  table (:mod:`orb_learning._search_sample`); a sampled row that proves it wrong sends the
  query to the exact path (docs/decisions/0007-search-sample-check.md).

Both paths compute the same cosine on the same stored vectors (half precision since
revision 0008, docs/decisions/0001-halfvec.md), so they rank rows identically. Every
statement runs with ``plan_cache_mode = force_custom_plan``: a generic plan of a prepared
statement once picked HNSW without iterative scan for a rare repo and returned 0.1 rows of
10.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._partition_routines import leaves
from ._store import RECORD_COLUMNS

if TYPE_CHECKING:
    import asyncpg
    import numpy as np

    from ._search_sample import RowSample

_SELECT = ", ".join(f'"{c}"' for c in RECORD_COLUMNS)
_PREFIXED = ", ".join(f'n."{c}"' for c in RECORD_COLUMNS)

# Filter fragments with named placeholders; :func:`_compile` numbers them. Values are
# always bind parameters, never formatted into the SQL.
_WINDOW = '"timestamp" >= now() - make_interval(hours => 24 * :days_back)'  # TimeZone-proof
_FILTERS = {
    (False, False): "embedding IS NOT NULL",
    (True, False): f"embedding IS NOT NULL AND {_WINDOW}",
    (False, True): "embedding IS NOT NULL AND repo = :repo",
    (True, True): f"embedding IS NOT NULL AND {_WINDOW} AND repo = :repo",
}
REFERENCE_ROWS = 100_000
_PLACEHOLDER = re.compile(r"(?<!:):([a-z_]+)\b")


@dataclass(frozen=True)
class SearchTuning:
    """Knobs of the HNSW path and of the choice between the two paths."""

    ef_search: int = 100
    """The HNSW candidate list for a table of up to ``REFERENCE_ROWS`` rows."""
    max_scan_tuples: int = 20_000
    exact_search_max_rows: int | None = None
    """None: :func:`exact_max_rows`'s rule; a number: that many rows, whatever the table."""
    candidates_per_result: int = 4
    """The HNSW path re-ranks this many candidates per result asked for (at most 1,000)."""
    scale_ef_search: bool = True
    """Grow ef_search with the square root of the table's rows beyond ``REFERENCE_ROWS``
    (at a fixed ef_search, recall falls as the graph grows: pgvector with ef_search 200 at
    a million rows recalled what 100 did at 100,000)."""
    check_sample_rows: int = 4_096
    """Rows of the sample each HNSW answer is checked against (:class:`RowSample`; 0: none)."""
    halfvec_ef_factor: float = 2.0
    """Half-precision distances are coarser: on unstructured vectors (3,000 uniform random
    ones, tests/test_search.py) ef_search 100 found 8 of the exact 10 where full precision
    found 10; twice the list finds 10 again, for about 0.2 ms at 100,000 rows."""


def _exact_sql(filters: str) -> str:
    return (
        f"SELECT {_SELECT}, 1 - (embedding <=> :query) AS similarity FROM executions "
        f"WHERE {filters} AND 1 - (embedding <=> :query) >= :threshold "
        "ORDER BY similarity DESC, task_id LIMIT :limit"
    )


def _hnsw_sql(filters: str) -> str:
    """The answer, and in ``found`` how many candidates the scan yielded (one row of NULLs
    and ``found`` when no candidate passes the threshold).

    The answer is ordered by ``similarity``, an expression of the distance, not by the
    distance itself: PostgreSQL 17+ knows the CTE's rows come out ordered by distance, and
    would trust that order (an incremental sort stopping at the first ``limit`` rows),
    which relaxed order does not keep. pgvector's README writes ``distance + 0``."""
    return (
        "WITH nearest AS MATERIALIZED ("
        f"SELECT {_SELECT}, embedding <=> :query AS distance FROM executions "
        f"WHERE {filters} ORDER BY embedding <=> :query LIMIT :candidates) "
        "SELECT a.*, c.found FROM (SELECT count(*) AS found FROM nearest) c "
        f"LEFT JOIN LATERAL (SELECT {_PREFIXED}, 1 - n.distance AS similarity FROM nearest n "
        "WHERE 1 - n.distance >= :threshold ORDER BY similarity DESC, n.task_id LIMIT :limit) a "
        "ON true"
    )


def _count_sql(filters: str) -> str:
    return f"EXPLAIN (FORMAT JSON) SELECT 1 FROM executions WHERE {filters}"


# The partitions' figures (a partitioned parent has none; one table is its own). Every partition
# has its own HNSW graph, so the largest one is what a search's ef_search must cover.
_LEAVES = f"FROM pg_class c WHERE c.oid IN ({leaves()})"
TABLE_ROWS = f"SELECT coalesce(sum(greatest(c.reltuples, 0)), 0) {_LEAVES}"
GRAPH_ROWS = f"SELECT coalesce(max(c.reltuples), 0) {_LEAVES}"
EXACT_ROWS_PER_ROOT = 14.0
EXACT_MIN_ROWS = 1_000


class PlannerEstimates:
    """The planner's figures the path choice rests on: the table's rows
    (``pg_class.reltuples``, the size of the graph every HNSW search walks) and, per filter,
    EXPLAIN's estimate of the rows passing it. Each is read at most once a ``ttl`` (60 s):
    only ANALYZE (autovacuum's too), VACUUM and index builds change them, and a stale
    figure costs at most the slower path, never a wrong answer. Keeps the last
    ``max_filters`` filters (repo and window) asked for, and the :class:`RowSample`."""

    def __init__(
        self, ttl: float = 60.0, max_filters: int = 4096, sample_ttl: float = 300.0
    ) -> None:
        self._ttl = ttl
        self._max_filters = max_filters
        self._read: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()
        self._spread: dict[Hashable, float] = {}
        self._sample_ttl = sample_ttl
        self._sample: tuple[RowSample, int] | None = None

    async def sample(self, connection: asyncpg.Connection, rows: int) -> RowSample:
        """About ``rows`` rows at random, read at most once a ``sample_ttl`` (300 s). A
        stale sample costs at most an exact answer not needed (a row deleted or changed
        since), never a wrong one."""
        from ._search_sample import read_sample  # numpy: only once a search runs

        now = time.monotonic()
        kept = self._sample
        if kept is None or kept[1] != rows or now - kept[0].read_at >= self._sample_ttl:
            kept = self._sample = (await read_sample(connection, rows, now), rows)
        return kept[0]

    async def table_rows(self, connection: asyncpg.Connection) -> float:
        """Rows in the table (0 before its first ANALYZE)."""
        return await self._cached(connection, "table", lambda: (TABLE_ROWS,))

    async def graph_rows(self, connection: asyncpg.Connection) -> float:
        """Rows in the largest partition: the largest HNSW graph a search walks."""
        return await self._cached(connection, "graph", lambda: (GRAPH_ROWS,))

    async def passing_rows(
        self, connection: asyncpg.Connection, days_back: int | None, repo: str | None
    ) -> float:
        """Rows passing the repo and window filters (statistics, no scan)."""
        return (await self.passing(connection, days_back, repo))[0]

    async def passing(
        self, connection: asyncpg.Connection, days_back: int | None, repo: str | None
    ) -> tuple[float, float]:
        """Rows passing the filters, and over how many graphs they spread
        (:func:`_spread`), from one EXPLAIN of the filtered table."""
        filters = _FILTERS[(days_back is not None, repo is not None)]
        values = {"days_back": days_back, "repo": repo}
        rows = await self._cached(
            connection, (days_back, repo), lambda: _compile(_count_sql(filters), values)
        )
        return rows, self.spread(days_back, repo)

    def spread(self, days_back: int | None, repo: str | None) -> float:
        """The spread last read for the filter (1 before the first read)."""
        return self._spread.get((days_back, repo), 1.0)

    async def _cached(
        self, connection: asyncpg.Connection, key: Hashable, query: Callable[[], tuple[Any, ...]]
    ) -> float:
        now = time.monotonic()
        read = self._read.get(key)
        if read is None or now - read[1] >= self._ttl:
            value = await connection.fetchval(*query())
            read = (_as_rows(value), now)
            self._read[key] = read
            if isinstance(value, str):  # a plan: how the rows spread over partitions
                self._spread[key] = _spread(json.loads(value)[0]["Plan"])
        self._read.move_to_end(key)
        kept = self._max_filters + sum(isinstance(k, str) for k in self._read)  # + table, graph
        while len(self._read) > kept:
            self._spread.pop(self._read.popitem(last=False)[0], None)
        return read[0]


def _spread(plan: dict[str, Any]) -> float:
    """The number of partitions a filter's rows spread over, weighted by their shares (the
    inverse Simpson index, (sum of rows)^2 / sum of rows^2): k equal partitions count k, one
    holding nearly every row counts about 1, empty ones nothing. One table counts 1."""
    while plan.get("Node Type") in ("Gather", "Result") and len(plan.get("Plans", [])) == 1:
        plan = plan["Plans"][0]
    if plan.get("Node Type") not in ("Append", "Parallel Append"):
        return 1.0
    rows = [float(child.get("Plan Rows", 0.0)) for child in plan.get("Plans", [])]
    squares = sum(r * r for r in rows)
    return max(sum(rows) ** 2 / squares, 1.0) if squares else 1.0


def _as_rows(value: Any) -> float:
    """reltuples (-1 before the first ANALYZE) or an EXPLAIN (FORMAT JSON) plan."""
    if isinstance(value, str):
        value = json.loads(value)
    if isinstance(value, list):
        value = value[0]["Plan"]["Plan Rows"]
    return max(float(value or 0.0), 0.0)


def exact_max_rows(tuning: SearchTuning, table_rows: float) -> float:
    """The most rows passing the filters for which the exact path is taken."""
    if tuning.exact_search_max_rows is not None:
        return tuning.exact_search_max_rows
    return max(EXACT_MIN_ROWS, EXACT_ROWS_PER_ROOT * math.sqrt(table_rows))


async def find_similar(
    connection: asyncpg.Connection,
    query: np.ndarray,
    *,
    repo: str | None,
    limit: int,
    days_back: int | None,
    threshold: float,
    tuning: SearchTuning,
    estimates: PlannerEstimates,
) -> list[dict[str, Any]]:
    """Rows with similarity >= threshold, most similar first, at most ``limit``.

    ``connection`` comes from the library's pool: the settings are made for the session,
    in one statement and no transaction (each round trip costs about 0.2 ms, a tenth of a
    search at 100,000 rows), and the pool's reset on release (``RESET ALL``) undoes them.
    """
    filters = _FILTERS[(days_back is not None, repo is not None)]
    candidates = _candidates(tuning, limit)
    values = {
        "query": query,
        "days_back": days_back,
        "repo": repo,
        "threshold": threshold,
        "limit": limit,
        "candidates": candidates,
    }
    table_rows = await estimates.table_rows(connection)
    graph_rows = await estimates.graph_rows(connection)
    # The settings first (the EXPLAIN behind the estimate needs a custom plan), with the
    # spread last read; when a new read changes it, ef_search once more.
    ef_search = _ef_search(tuning, candidates, graph_rows, estimates.spread(days_back, repo))
    await _configure(connection, ef_search, tuning)
    passing, graphs = await estimates.passing(connection, days_back, repo)
    if (fresh := _ef_search(tuning, candidates, graph_rows, graphs)) != ef_search:
        await connection.execute("SELECT set_config('hnsw.ef_search', $1, false)", str(fresh))
    if passing > exact_max_rows(tuning, table_rows):
        found = await connection.fetch(*_compile(_hnsw_sql(filters), values))
        rows = [_without_found(r) for r in found if r["task_id"] is not None]
        if not _ran_out(len(rows), found[0]["found"], limit, candidates) and not (
            await _disproved(connection, query, rows, values, tuning, estimates)
        ):
            return rows
    return [dict(row) for row in await connection.fetch(*_compile(_exact_sql(filters), values))]


async def _disproved(
    connection: asyncpg.Connection,
    query: np.ndarray,
    rows: list[dict[str, Any]],
    values: dict[str, Any],
    tuning: SearchTuning,
    estimates: PlannerEstimates,
) -> bool:
    """Whether the sample holds a row the HNSW answer should have had: one passing the
    filters, not in it, more similar than its last row (than the threshold if short)."""
    if tuning.check_sample_rows <= 0:
        return False
    sample = await estimates.sample(connection, tuning.check_sample_rows)
    full = len(rows) == values["limit"]
    return sample.beats(
        query,
        rows[-1]["similarity"] if full else values["threshold"],
        repo=values["repo"],
        days_back=values["days_back"],
        answered={r["task_id"] for r in rows},
    )


def _ran_out(answered: int, found: int, limit: int, candidates: int) -> bool:
    """Whether the HNSW answer may be short: the scan yielded fewer candidates than asked
    (what it found is then not even the nearest rows), and the answer has room for more."""
    return found < candidates and answered < limit


def _without_found(row: asyncpg.Record) -> dict[str, Any]:
    out = dict(row)
    del out["found"]
    return out


def _candidates(tuning: SearchTuning, limit: int) -> int:
    return max(limit, min(limit * tuning.candidates_per_result, 1000))


def _ef_search(
    tuning: SearchTuning, candidates: int, graph_rows: float, graphs: float = 1.0
) -> int:
    """At least the candidates asked for, scaled with the largest graph's rows and divided
    by the square root of the number of graphs the query walks (:func:`_spread`), at most
    1,000.

    A query over k partitions walks k graphs, each with the whole ``ef_search`` list, while
    each holds about 1/k of the answer: at a million rows in 13 months the window of a
    year walked 13 lists of 233 in 43 ms, and lists of 70 found the same ten (recall@10
    1.0 over 30 queries) in 15 ms (docs/decisions/0011-time-partitions.md). The sample
    check still sends a walk that missed to the exact path."""
    ef_search: float = tuning.ef_search * tuning.halfvec_ef_factor
    if tuning.scale_ef_search and graph_rows > REFERENCE_ROWS:
        ef_search *= math.sqrt(graph_rows / REFERENCE_ROWS)
    if tuning.scale_ef_search:
        ef_search /= math.sqrt(max(graphs, 1.0))
    return min(max(round(ef_search), candidates), 1000)


async def _configure(connection: asyncpg.Connection, ef_search: int, tuning: SearchTuning) -> None:
    """Custom plans for every statement, and the HNSW scan's settings (harmless to the
    exact path). SET takes no bind parameters; set_config does."""
    await connection.execute(
        "SELECT set_config('plan_cache_mode', 'force_custom_plan', false), "
        "set_config('hnsw.ef_search', $1, false), "
        "set_config('hnsw.iterative_scan', 'relaxed_order', false), "
        "set_config('hnsw.max_scan_tuples', $2, false)",
        str(ef_search),
        str(tuning.max_scan_tuples),
    )


def _compile(template: str, values: dict[str, Any]) -> tuple[Any, ...]:
    """Number the ``:name`` placeholders of ``template`` as $1, $2...; return the SQL and
    the values in that order (PostgreSQL rejects parameters a statement does not use)."""
    order: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in order:
            order.append(name)
        return f"${order.index(name) + 1}"

    sql = _PLACEHOLDER.sub(number, template)
    return (sql, *(values[name] for name in order))
