"""The orb-learning command, end to end in subprocesses, on the real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orb_learning import LearningDatabase, migrations, sample
from orb_learning._catalog import CURRENT_VIEWS
from tests.test_store import unit_vectors


def cli(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "ORB_LEARNING_DATABASE_URL"}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "orb_learning.cli", *args],
        input=stdin,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture
async def seeded_url(database_url: str, embedder: object) -> str:
    async with LearningDatabase(database_url, embedder=embedder) as db:  # type: ignore[arg-type]
        records = sample.generate(300, seed=3)
        await db.store_executions(records, embeddings=unit_vectors(300))
        await db.store_executions(sample.generate(5, seed=4))  # real embeddings, for `similar`
        await db.refresh_views()
    return database_url


async def test_db_lifecycle_commands(empty_database_url: str) -> None:
    url = empty_database_url
    assert cli("--dsn", url, "db", "current").stdout.startswith("base")
    invalid = cli("--dsn", url, "db", "validate", "--json")
    assert invalid.returncode == 1
    report = json.loads(invalid.stdout)
    assert report["ok"] is False and any(c["status"] == "MISSING" for c in report["checks"])

    assert cli("--dsn", url, "db", "upgrade").returncode == 0
    head = migrations.head_revision()
    assert cli("--dsn", url, "db", "current").stdout.strip() == f"{head} (head)"
    valid = cli("--dsn", url, "db", "validate")
    assert valid.returncode == 0, valid.stdout
    for needed in (
        "extension vector",
        "idx_executions_embedding_hnsw",
        "tier_performance_mv",
        "uq_solution_patterns_history_mv",
        "orb_learning_refresh_views",
        "revision at head",
    ):
        assert needed in valid.stdout  # fmt: skip
    assert "MISSING" not in valid.stdout

    history = cli("--dsn", url, "db", "history")
    assert history.returncode == 0 and "0001" in history.stdout and head in history.stdout
    assert cli("--dsn", url, "db", "downgrade", "base").returncode == 0
    assert cli("--dsn", url, "db", "current").stdout.startswith("base")


async def test_validate_names_what_is_missing(database_url: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(database_url)
    await connection.execute("DROP INDEX idx_executions_embedding_hnsw")
    await connection.close()
    result = cli("--dsn", database_url, "db", "validate")
    assert result.returncode == 1
    line = next(
        line for line in result.stdout.splitlines() if "index idx_executions_embedding_hnsw" in line
    )
    assert "MISSING" in line


async def test_reset_asks_unless_yes(database_url: str, seeded_url: str) -> None:
    refused = cli("--dsn", database_url, "db", "reset")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    done = cli("--dsn", database_url, "db", "reset", "--yes")
    assert done.returncode == 0, done.stderr
    stats = json.loads(cli("--dsn", database_url, "stats", "--json").stdout)
    assert stats["executions"] == 0


async def test_read_commands_print_tables_and_json(seeded_url: str) -> None:
    url = seeded_url
    similar = ["similar", "Optimize slow queries in the caching layer", "--threshold", "0.3"]
    for command in ([*similar, "--days-back", "400"], ["tiers", "--days-back", "365"],
                    ["pools", "--days-back", "30"], ["patterns", "--min-usage", "1"]):  # fmt: skip
        table = cli("--dsn", url, *command)
        assert table.returncode == 0, table.stderr
        assert "-----" in table.stdout
        as_json = cli("--dsn", url, *command, "--json")
        rows = json.loads(as_json.stdout)  # JSON alone on stdout
        assert isinstance(rows, list) and rows, command
    tiers = json.loads(cli("--dsn", url, "tiers", "--days-back", "365", "--json").stdout)
    assert sum(r["total_executions"] for r in tiers) == 305
    stats = json.loads(cli("--dsn", url, "stats", "--json").stdout)
    assert stats["executions"] == 305 and stats["total_bytes"] > 0
    assert {v["view_name"] for v in stats["views"]} == {view.name for view in CURRENT_VIEWS}
    human = cli("--dsn", url, "stats")
    assert "MiB" in human.stdout and "last_refreshed_at" in human.stdout


async def test_similar_says_why_it_found_nothing(seeded_url: str) -> None:
    strict = cli("--dsn", seeded_url, "similar", "Optimize slow queries", "--threshold", "0.99")
    assert strict.returncode == 0, strict.stderr
    assert "(no rows)" in strict.stdout
    hint = strict.stdout.splitlines()[-1]
    assert "reaches similarity 0.99" in hint and "the closest has similarity 0." in hint
    assert "executions in the last 90 days" in hint and "lower --threshold" in hint
    nowhere = cli("--dsn", seeded_url, "similar", "Optimize", "--repo", "no-such-repo")
    assert "No executions in the last 90 days of repo 'no-such-repo'" in nowhere.stdout
    assert "drop --repo" in nowhere.stdout
    as_json = cli("--dsn", seeded_url, "similar", "Optimize", "--threshold", "0.99", "--json")
    assert json.loads(as_json.stdout) == []  # scripts get the rows alone


async def test_a_reader_that_leaves_early_is_not_an_error(seeded_url: str) -> None:
    """``orb-learning similar ... | head``: no "PostgreSQL is unavailable", no traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    arguments = ["similar", "Optimize", "--threshold", "-1", "--limit", "300", "--json"]
    environment = {k: v for k, v in os.environ.items() if k != "ORB_LEARNING_DATABASE_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "orb_learning.cli", "--dsn", seeded_url, *arguments],
        stdout=write_end,
        stderr=subprocess.PIPE,
        env=environment,
        text=True,
        timeout=180,
    )
    os.close(write_end)
    assert result.returncode == 141, result.stderr
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("postgresql://u:secret@127.0.0.1:1/x", "PostgreSQL is unavailable"),
        ("postgresql://u:secret@localhost:notaport/x", "invalid port"),
        ("mysql://u:secret@host/db", "not a PostgreSQL URL"),
    ],
)
def test_errors_are_one_line_with_the_fix_and_no_password(dsn: str, expected: str) -> None:
    for command in (["tiers"], ["db", "current"], ["stats", "--json"]):
        result = cli("--dsn", dsn, *command)
        assert result.returncode == 1
        assert expected in result.stderr
        assert "Traceback" not in result.stderr and "secret" not in result.stderr + result.stdout
        assert len(result.stderr.strip().splitlines()) == 1


async def test_not_migrated_says_how_to_fix(empty_database_url: str) -> None:
    result = cli("--dsn", empty_database_url, "tiers")
    assert result.returncode == 1 and "alembic upgrade head" in result.stderr
    verbose = cli("--dsn", empty_database_url, "-v", "tiers")
    assert "Traceback" in verbose.stderr  # -v shows it


async def test_pgvector_missing_is_explained(empty_database_url: str, tmp_path: Path) -> None:
    """A server without the extension, simulated with PostgreSQL 18's
    extension_control_path pointing at an empty directory (a per-connection setting)."""
    without_pgvector = f"{empty_database_url}&extension_control_path={tmp_path}"
    result = cli("--dsn", without_pgvector, "db", "upgrade")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "pgvector is not installed" in result.stderr


async def test_psql_opens_on_the_database(seeded_url: str) -> None:
    result = cli("--dsn", seeded_url, "psql", stdin="SELECT count(*) AS n FROM executions;\n")
    assert result.returncode == 0, result.stderr
    assert "305" in result.stdout


def test_help_is_quick_to_load_and_lists_every_command() -> None:
    result = cli("--help")
    for command in (
        "demo",
        "db",
        "similar",
        "tiers",
        "pools",
        "patterns",
        "stats",
        "recommend",
        "evaluate-routing",
        "refresh",
        "psql",
    ):
        assert command in result.stdout


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (["tiers", "--days-back", "-5"], "--days-back"),
        (["pools", "--days-back", "many"], "--days-back"),
        (["similar", "x", "--limit", "0"], "--limit"),
        (["similar", "x", "--threshold", "2"], "--threshold"),
        (["retention", "--keep-days", "1", "--batch-size", "0"], "--batch-size"),
        (["similar", ""], "task_description must not be empty"),
        (["--dsn", "postgresql://u:pw@[::1/orb", "tiers"], "Invalid IPv6 URL"),
        (["retention", "--keep-days", "1", "--archive", "/proc/nope"], "/proc/nope"),
        (["recommend", "x", "--min-success", "2"], "--min-success"),
        (["recommend", "x", "--cost-weight", "-1"], "--cost-weight"),
        (["recommend", "x", "--candidate", "large"], "TIER:POOL"),
        (["recommend", "x", "--min-success", "0.5", "--cost-weight", "1"], "not allowed with"),
        (["evaluate-routing", "--data", "/nope.csv"], "/nope.csv"),
    ],
)
def test_every_error_is_one_line_naming_the_problem(
    database_url: str, arguments: list[str], named: str
) -> None:
    dsn = [] if arguments[0] == "--dsn" else ["--dsn", database_url]
    result = cli(*dsn, *arguments)
    assert result.returncode in (1, 2)
    assert result.stderr.count("\n") == 1, result.stderr
    assert named in result.stderr and "Traceback" not in result.stderr
    if arguments[-1] == "/proc/nope":
        assert "unavailable" not in result.stderr  # a file system error, not the server's
    verbose = cli("-v", *dsn, *arguments)
    if result.returncode == 1:  # an error of the library: -v shows where it came from
        assert "Traceback" in verbose.stderr


def embedded_server_running(data_dir: Path) -> bool:
    import psutil

    pid_file = data_dir / "postmaster.pid"
    if not pid_file.exists():
        return False
    return psutil.pid_exists(int(pid_file.read_text().split()[0]))


def test_psql_passes_its_arguments_and_stops_the_embedded_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "pg"
    assert cli("--data-dir", str(data_dir), "db", "upgrade").returncode == 0
    assert not embedded_server_running(data_dir)
    result = cli("--data-dir", str(data_dir), "psql", "-X", "-c", r"\d+ executions")
    assert result.returncode == 0, result.stderr
    assert "idx_executions_embedding_hnsw" in result.stdout
    assert not embedded_server_running(data_dir)
    assert cli("--data-dir", str(data_dir), "stats", "--json").returncode == 0
    assert not embedded_server_running(data_dir)  # and no stale handle kept it alive


def test_a_dead_process_in_the_handle_list_does_not_keep_the_server_running(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "pg"
    assert cli("--data-dir", str(data_dir), "db", "current").returncode == 0
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    (data_dir / ".handle_pids.json").write_text(json.dumps([int(dead.stdout)]))
    assert cli("--data-dir", str(data_dir), "db", "current").returncode == 0
    assert not embedded_server_running(data_dir)
