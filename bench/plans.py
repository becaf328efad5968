"""EXPLAIN ANALYZE, boiled down to the scans of the base table and of the views."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from orb_learning._catalog import CURRENT_VIEWS

from . import queries
from .capture import Captured
from .queries import key


async def scans(connection: asyncpg.Connection, sql: str, args: tuple[Any, ...]) -> dict[str, Any]:
    """EXPLAIN ANALYZE: the scans of the base table and of the views, and the total time."""
    raw = await connection.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *args)
    plan = json.loads(raw)[0]
    found: list[dict[str, Any]] = []
    _walk(plan["Plan"], found)
    return {"execution_ms": plan["Execution Time"], "scans": found}


_RELATIONS = {"executions", *(view.name for view in CURRENT_VIEWS)}


def _walk(node: dict[str, Any], found: list[dict[str, Any]]) -> None:
    relation = node.get("Relation Name")
    if relation in _RELATIONS:
        loops = node.get("Actual Loops", 1)
        node_type = ("Parallel " if node.get("Parallel Aware") else "") + node["Node Type"]
        indexes = [node["Index Name"]] if "Index Name" in node else []
        for child in node.get("Plans", []):
            _index_names(child, indexes)
        removed = node.get("Rows Removed by Filter", 0) + node.get(
            "Rows Removed by Index Recheck", 0
        )
        found.append(
            {
                "relation": relation,
                "node": node_type,
                "indexes": indexes,
                "rows": round(node.get("Actual Rows", 0) * loops),
                "removed": round(removed * loops),
                "ms": node.get("Actual Total Time", 0.0),
                "estimated": node.get("Plan Rows", 0),
            }
        )
    for child in node.get("Plans", []):
        if child.get("Node Type") not in ("Bitmap Index Scan", "BitmapAnd", "BitmapOr"):
            _walk(child, found)


def _index_names(node: dict[str, Any], into: list[str]) -> None:
    if "Index Name" in node:
        into.append(node["Index Name"])
    for child in node.get("Plans", []):
        _index_names(child, into)


def describe(scan: dict[str, Any]) -> str:
    using = f" using {'+'.join(scan['indexes'])}" if scan["indexes"] else ""
    return (
        f"{scan['node']} on {scan['relation']}{using}: {scan['rows']} rows"
        f" ({scan['removed']} filtered out), {scan['ms']:.1f} ms"
    )


async def api_plans(
    connection: asyncpg.Connection, captured: dict[str, Captured]
) -> dict[str, Any]:
    """The plans of the API's aggregate statements (all repos), fresh=False and fresh=True,
    with the number of statements one call runs."""
    plans: dict[str, Any] = {}
    for method in queries.METHODS:
        for fresh in (False, True):
            name = key(method, "all", f"fresh={fresh}")
            main = captured[name].main
            plans[name] = {
                **await scans(connection, main.query, main.args),
                "statements_per_call": len(captured[name].statements),
            }
    return plans


TAIL_BOUNDS = {
    "sub-select of the watermark": (
        "(SELECT watermark FROM view_watermarks WHERE view_name = 'tier_performance_recent_mv')"
    ),
    "watermark as a parameter": "$1::timestamptz",
}


async def tail_estimates(connection: asyncpg.Connection) -> dict[str, dict[str, float]]:
    """The planner's row estimate for the live tail with its bound read by a sub-select or
    passed as a parameter, against the actual count (serial plans, so estimates are whole)."""
    watermark = await connection.fetchval(
        "SELECT watermark FROM view_watermarks WHERE view_name = 'tier_performance_recent_mv'"
    )
    result: dict[str, dict[str, float]] = {}
    async with connection.transaction():
        await connection.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        for name, bound in TAIL_BOUNDS.items():
            sql = f'SELECT task_id FROM executions WHERE "timestamp" >= {bound}'
            args = (watermark,) if "$1" in bound else ()
            found = (await scans(connection, sql, args))["scans"][0]
            result[name] = {"estimated": found["estimated"], "actual": found["rows"]}
    return result
