"""deploy/grafana: the provisioned data source and dashboard, and every panel's SQL run on a
seeded database as Grafana would send it (macros expanded as Grafana's PostgreSQL data source
does), as the read-only role Grafana connects as."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from orb_learning.embeddings import Embedder
from orb_learning.roles import grant_reader
from tests.conftest import fresh_database
from tests.test_psql_cookbook import seed

ROOT = Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "orb-learning.json"
DATASOURCE = GRAFANA / "provisioning" / "datasources" / "orb-learning.yaml"
PROVIDER = GRAFANA / "provisioning" / "dashboards" / "orb-learning.yaml"
UID = "orb-learning"
FIRST_VERSION = {  # id: (type, title), first-version.md section 5
    1: ("stat", "Execution Count (Last 24 Hours)"),
    2: ("stat", "Success Rate (Last 24 Hours)"),
    3: ("stat", "Average Quality Score (Last 24 Hours)"),
    4: ("stat", "Total Cost (Last 24 Hours)"),
    5: ("timeseries", "Executions Over Time (Last 7 Days)"),
    6: ("timeseries", "Success Rate Over Time (Last 7 Days)"),
    7: ("bargauge", "Success Rate by Model Tier"),
    8: ("bargauge", "Average Duration by Model Tier (Seconds)"),
    9: ("piechart", "Cost by Model Tier (Last 7 Days)"),
    10: ("table", "Pool Performance Comparison (Last 7 Days)"),
    11: ("table", "Top Repositories by Execution Count (Last 30 Days)"),
    12: ("gauge", "Duration Percentiles (Last 7 Days)"),
    13: ("piechart", "Quality Score Distribution (Last 30 Days)"),
    14: ("table", "Task Type Distribution (Last 30 Days)"),
    15: ("table", "Top Error Types (Last 7 Days)"),
    16: ("stat", "Database Size Growth (Last 30 Days)"),
    17: ("gauge", "Average Routing Confidence (Last 7 Days)"),
}
NUMERIC = {"int2", "int4", "int8", "numeric", "float4", "float8"}
UNITS = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 604800,
    "M": 2592000,
    "y": 31536000,
}
ROUND_INTERVAL_MS = [  # Grafana's rangeutil.roundInterval: (below, use)
    (10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000),
    (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000),
    (90000, 60000), (210000, 120000), (450000, 300000), (750000, 600000), (1050000, 900000),
    (1500000, 1200000), (2700000, 1800000), (5400000, 3600000), (9000000, 7200000),
    (16200000, 10800000), (32400000, 21600000), (86400000, 43200000), (604800000, 86400000),
    (1814400000, 604800000), (3628800000, 2592000000),
]  # fmt: skip


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


# -- Grafana's side: the time range, $__interval, the macros -----------------------------


def parse_interval(text: str) -> timedelta:
    """gtime.ParseInterval / intervalToMs: ``5m``, ``'1h'``, ``500ms``, ``1d``..."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|[smhdwMy])", text.strip().strip("'\""))
    if not match:
        raise ValueError(f"error parsing interval {text}")
    return timedelta(seconds=float(match.group(1)) * UNITS[match.group(2)])


def calculate_interval(start: datetime, end: datetime, resolution: int, low: str | None) -> str:
    """rangeutil.calculateInterval + secondsToHms: the panel's $__interval."""
    span_ms = (end - start) / timedelta(milliseconds=1) / resolution
    interval_ms = next((use for below, use in ROUND_INTERVAL_MS if span_ms < below), 31536000000)
    interval_ms = max(interval_ms, parse_interval(low) / timedelta(milliseconds=1) if low else 1)
    seconds = interval_ms / 1000
    for unit in ("y", "d", "h", "m", "s"):
        if seconds >= UNITS[unit]:
            return f"{int(seconds // UNITS[unit])}{unit}"
    return f"{int(interval_ms)}ms"


def rfc3339nano(moment: datetime) -> str:
    """Go's time.RFC3339Nano of a UTC instant (trailing zeros of the fraction dropped)."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{moment.microsecond:06d}".rstrip("0")
    return f"{text}.{fraction}Z" if fraction else f"{text}Z"


def go_float(value: float) -> str:
    """Go's ``%v`` of a float64 (shortest digits; exponent form from 1e+06 or under 1e-04)."""
    _, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    power = len(digits) - 1 + exponent
    if -4 <= power < 6:
        return f"{Decimal(repr(value)).normalize():f}"
    mantissa = str(digits[0]) + ("." + "".join(map(str, digits[1:])) if len(digits) > 1 else "")
    return f"{mantissa}e{'+' if power >= 0 else '-'}{abs(power):02d}"


MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^\)]*)\)")


def expand_macros(sql: str, start: datetime, end: datetime) -> str:
    """The Interpolate of Grafana's grafana-postgresql-datasource (macros.go), TimescaleDB off."""

    def evaluate(name: str, args: list[str]) -> str:
        if name in ("__time", "__timeEpoch", "__timeFilter", "__unixEpochFilter") and not args[0]:
            raise ValueError(f"missing time column argument for macro {name}")
        if name == "__time":
            return f'{args[0]} AS "time"'
        if name == "__timeEpoch":
            return f'extract(epoch from {args[0]}) as "time"'
        if name == "__timeFilter":
            return f"{args[0]} BETWEEN '{rfc3339nano(start)}' AND '{rfc3339nano(end)}'"
        if name in ("__timeFrom", "__timeTo"):
            return f"'{rfc3339nano(start if name == '__timeFrom' else end)}'"
        if name in ("__timeGroup", "__unixEpochGroup"):
            seconds = go_float(parse_interval(args[1]).total_seconds())
            column = f"extract(epoch from {args[0]})" if name == "__timeGroup" else f"({args[0]})"
            return f"floor({column}/{seconds})*{seconds}"
        if name in ("__timeGroupAlias", "__unixEpochGroupAlias"):
            return evaluate(name.removesuffix("Alias"), args) + ' AS "time"'
        if name == "__unixEpochFilter":
            first, last = int(start.timestamp()), int(end.timestamp())
            return f"{args[0]} >= {first} AND {args[0]} <= {last}"
        if name in ("__unixEpochFrom", "__unixEpochTo"):
            return str(int((start if name == "__unixEpochFrom" else end).timestamp()))
        raise ValueError(f"unknown macro {name!r}")

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        after = sql.find(match.group(0)) + len(match.group(0))
        if name == "__timeGroup" and sql[after : after + 1] == ",":  # pre-5.3 compatibility
            name = "__timeGroupAlias"
        return evaluate(name, [arg.strip() for arg in match.group(2).split(",")])

    return MACRO.sub(replace, sql)


@dataclass(frozen=True)
class Request:
    """One panel query as Grafana sends it for a time range."""

    sql: str
    start: datetime
    end: datetime


def request(panel: dict[str, Any], now: datetime, dashboard_from: str) -> Request:
    relative = panel.get("timeFrom") or dashboard_from.removeprefix("now-")
    start, end = now - parse_interval(relative), now
    resolution = panel.get("maxDataPoints") or round(panel["gridPos"]["w"] / 24 * 1800)
    low = panel.get("interval") or datasource()["jsonData"].get("timeInterval")
    interval = calculate_interval(start, end, resolution, low)
    sql = panel["targets"][0]["rawSql"]
    ms = str(int(parse_interval(interval) / timedelta(milliseconds=1)))
    sql = sql.replace("$__interval_ms", ms).replace("$__interval", interval)  # the frontend's
    return Request(expand_macros(sql, start, end), start, end)


def datasource() -> dict[str, Any]:
    source: dict[str, Any] = yaml.safe_load(DATASOURCE.read_text())["datasources"][0]
    return source


# -- the files ---------------------------------------------------------------------------


def test_expander_matches_grafanas_own_tests() -> None:
    start = datetime(2018, 4, 12, 18, 0, tzinfo=UTC)
    end = start + timedelta(minutes=5)
    cases = {
        "select $__time(time_column)": 'select time_column AS "time"',
        "WHERE $__timeFilter(time_column)": (
            "WHERE time_column BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z'"
        ),
        "select $__timeFrom()": "select '2018-04-12T18:00:00Z'",
        "SELECT $__timeGroup(time_column,'5m'), value": (
            'SELECT floor(extract(epoch from time_column)/300)*300 AS "time", value'
        ),
        "SELECT $__timeGroup(time_column,'5m') as time": (
            "SELECT floor(extract(epoch from time_column)/300)*300 as time"
        ),
        "$__timeGroupAlias(time_column , '5m')": (
            'floor(extract(epoch from time_column)/300)*300 AS "time"'
        ),
        "SELECT $__unixEpochGroupAlias(time_column+time_adjustment,'5m')": (
            'SELECT floor((time_column+time_adjustment)/300)*300 AS "time"'
        ),
        "select $__unixEpochFilter(time)": "select time >= 1523556000 AND time <= 1523556300",
        "$__timeGroup(t, 30d)": "floor(extract(epoch from t)/2.592e+06)*2.592e+06",
    }
    for sql, expected in cases.items():
        assert expand_macros(sql, start, end) == expected
    half = datetime(1960, 2, 1, 7, 0, 0, 500000, tzinfo=UTC)
    assert rfc3339nano(half) == "1960-02-01T07:00:00.5Z"
    assert calculate_interval(end - timedelta(days=7), end, 1000, None) == "10m"
    assert calculate_interval(end - timedelta(days=7), end, 1000, "1h") == "1h"


def test_datasource_and_dashboard_provider() -> None:
    source = datasource()
    assert source["type"] == "grafana-postgresql-datasource" and source["uid"] == UID
    assert source["jsonData"]["postgresVersion"] == 1800
    assert source["jsonData"]["timescaledb"] is False
    assert source["jsonData"]["database"] == "orb_learning"
    assert source["secureJsonData"]["password"] == "${ORB_LEARNING_GRAFANA_DB_PASSWORD}"
    assert source["user"] == "grafana_reader"  # the role docker-compose's grafana-reader makes
    provider = yaml.safe_load(PROVIDER.read_text())["providers"][0]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/etc/grafana/dashboards/orb-learning"


def test_panels_are_complete_unique_and_do_not_overlap() -> None:
    board = dashboard()
    assert board["uid"] == UID and board["time"]["from"].startswith("now-")
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        assert panel["type"] and panel["title"], panel["id"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["w"] > 0 and grid["h"] > 0, panel["title"]
        area = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])}  # fmt: skip
        assert not cells & area, f"{panel['title']} overlaps another panel"
        cells |= area
        assert panel["datasource"]["uid"] == UID
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == UID and target["rawQuery"] is True
            assert target["refId"] and target["rawSql"].strip() and target["editorMode"] == "code"
            expected = "time_series" if panel["type"] == "timeseries" else "table"
            assert target["format"] == expected, panel["title"]
            assert "--" not in target["rawSql"] and "/*" not in target["rawSql"]
            assert "NOW()" not in target["rawSql"].upper().replace("NOW() -", "")
    assert {p["id"]: (p["type"], p["title"]) for p in panels if p["id"] <= 17} == FIRST_VERSION
    sources = {p["id"]: p["targets"][0]["rawSql"] for p in panels}
    assert sources[1].lstrip().upper().startswith("SELECT")  # the first version's lacked it
    assert all("$__timeFilter(" in sources[i] for i in FIRST_VERSION)
    assert "INTERVAL '" not in " ".join(sources[i] for i in FIRST_VERSION).upper()
    new = " ".join(sql for i, sql in sources.items() if i not in FIRST_VERSION)
    assert "solution_patterns_mv" in new and "view_refresh_log" in new
    assert "FROM tier_performance_mv\nWHERE $__timeFilter(date)" in new


# -- the SQL, on a seeded database -------------------------------------------------------


@pytest.fixture(scope="module")
async def grafana_connection(
    server_url: str, template_url: str, embedder: Embedder
) -> AsyncIterator[asyncpg.Connection]:
    """A connection to a seeded database, acting as a role made by grant-reader."""
    async with fresh_database(server_url) as url:
        await seed(url, embedder)
        role = f"orb_test_grafana_{uuid.uuid4().hex[:8]}"
        connection = await asyncpg.connect(url)
        try:
            await grant_reader(connection, role)
            await connection.execute(f'SET ROLE "{role}"')
            yield connection
            await connection.execute("RESET ROLE")
        finally:
            await connection.execute(f'DROP OWNED BY "{role}"')
            await connection.execute(f'DROP ROLE IF EXISTS "{role}"')
            await connection.close()


def check_shape(panel: dict[str, Any], columns: list[tuple[str, str]], rows: list[Any]) -> None:
    """The columns (name, type) and rows the panel's visualization needs."""
    names = [name for name, _ in columns]
    kinds = [kind for _, kind in columns]
    assert len(set(names)) == len(names)
    if panel["type"] in ("stat", "gauge"):
        assert len(rows) == 1 and all(kind in NUMERIC for kind in kinds)
    elif panel["type"] == "timeseries":
        assert names[0] == "time" and kinds[0] in NUMERIC | {"timestamptz"}
        assert len(names) > 1 and all(kind in NUMERIC for kind in kinds[1:])
        times = [row[0] for row in rows]
        assert times == sorted(set(times)), "time series must be sorted by time"
    elif panel["type"] in ("bargauge", "piechart"):
        assert kinds[0] == "text" and len(kinds) > 1 and all(k in NUMERIC for k in kinds[1:])
    overrides = panel["fieldConfig"]["overrides"]
    named = [o["matcher"]["options"] for o in overrides if o["matcher"]["id"] == "byName"]
    assert set(named) <= set(names), f"overrides name missing columns: {set(named) - set(names)}"


async def test_every_panel_runs_and_returns_what_its_visualization_needs(
    grafana_connection: asyncpg.Connection,
) -> None:
    board = dashboard()
    now = datetime.now(UTC)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # Grafana's ranges are in ms
    failures = []
    for panel in board["panels"]:
        ranges = [board["time"]["from"]] + ([] if panel.get("timeFrom") else ["now-24h", "now-30d"])
        for index, dashboard_from in enumerate(ranges):
            query = request(panel, now, dashboard_from)
            assert "$" not in query.sql, f"{panel['title']}: unexpanded {query.sql}"
            try:
                statement = await grafana_connection.prepare(query.sql)
                rows = await statement.fetch()
                columns = [(a.name, a.type.name) for a in statement.get_attributes()]
                check_shape(panel, columns, rows)
                if index == 0:  # the default range of a seeded database has data everywhere
                    assert rows, "no data"
                if panel["type"] in ("stat", "gauge"):
                    assert None not in rows[0], "a stat without a value"
            except (asyncpg.PostgresError, AssertionError) as exc:
                failures.append(f"{panel['title']} ({dashboard_from}): {exc}\n{query.sql}")
    assert not failures, "\n\n".join(failures)
