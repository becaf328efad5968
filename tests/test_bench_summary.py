"""The benchmark's committed results: RESULTS.md is results.json rendered, the run holds
every part with its machine reference, and the harness runs end to end (a smoke run).

Correctness only: no test here reads a figure as fast or slow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench import results, summary

COMMITTED = results.BENCH_DIR / "results.json"


def test_the_committed_page_is_the_committed_results_rendered() -> None:
    measured = results.read(COMMITTED)
    assert summary.markdown(measured) == (results.BENCH_DIR / "RESULTS.md").read_text()


def test_the_committed_run_holds_every_part_with_its_reference() -> None:
    parts = results.read(COMMITTED)["parts"]
    assert set(parts) == {"search", "analytics", "routing", "embeddings", "telemetry", "partitions"}
    [partitioned] = parts["partitions"]  # merged in from a later run (noted under "merged")
    assert partitioned["rows"] == 1_000_000 and partitioned["search"]["reference"]["p50"] > 0
    assert ["partitions"] in [m["parts"] for m in results.read(COMMITTED)["merged"]]
    for name in ("search", "analytics"):
        assert {level["rows"] for level in parts[name]} >= {1_000, 100_000}
    for level in parts["search"]:
        groups = [level["api"], level["exact"], level["churn"]["after"], *level["paths"]]
        assert all(group["reference"]["p50"] > 0 for group in groups)
        assert level["api"]["recall"]["unfiltered"]["recall"] is not None
    assert all(level["reference"]["p50"] > 0 for level in parts["analytics"])
    assert parts["embeddings"]["per_query"]["reference"]["p50"] > 0
    assert parts["telemetry"]["throughput"]["all_rows_written"]
    routing = parts["routing"]
    assert {level["rows"] for level in routing["latency"]} >= {1_000, 100_000}
    assert all(level["reference"]["p50"] > 0 for level in routing["latency"])
    for result in routing["quality"]["files"].values():
        assert {s["method"] for s in result["offline"]} >= {"recommender", "oracle"}
        assert result["replay"]


def test_a_comparison_puts_the_previous_run_beside(tmp_path: Path) -> None:
    measured = results.read(COMMITTED)
    compared = summary.table(measured, measured)
    assert compared.headers[-3:] == ["previous", "now / previous", "previous reference"]
    assert len(compared.rows) == len(summary.rows(measured))
    assert all(row[-2] in ("1.00x", "-") for row in compared.rows)
    (tmp_path / "old.json").write_text(COMMITTED.read_text())
    summary.main([str(COMMITTED), "--compare", str(tmp_path / "old.json")])


def test_a_quick_run_writes_results_and_their_page(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "embeddings", "--out", str(tmp_path)],
        cwd=results.REPOSITORY,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    measured = results.read(tmp_path / "results.json")
    part = measured["parts"]["embeddings"]
    assert set(part["agreement"]) == set(part["backends"]) == set(part["per_query"]["cases"])
    assert summary.markdown(measured) == (tmp_path / "RESULTS.md").read_text()
    assert "embeddings" in done.stdout and json.loads((tmp_path / "results.json").read_text())


def test_the_partitions_part_compares_partitions_with_one_table(tmp_path: Path) -> None:
    """A smoke run of the partitions part, merged into a copy of the committed results: the
    table's clone converted (batched: over 20,000 rows) with every row, both searched on a
    small level, a month gone from both; the other parts kept, the merge noted."""
    (tmp_path / "results.json").write_text(COMMITTED.read_text())
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "partitions", "--rows", "24000",
         "--merge", "--out", str(tmp_path)],
        cwd=results.REPOSITORY, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    merged = results.read(tmp_path / "results.json")
    assert set(merged["parts"]) == set(results.read(COMMITTED)["parts"])
    assert merged["merged"][-1]["parts"] == ["partitions"]
    assert summary.markdown(merged) == (tmp_path / "RESULTS.md").read_text()
    [level] = merged["parts"]["partitions"]
    assert level["partitions"]["holding_rows"] >= 12 and level["partitions"]["default_rows"] == 0
    assert min(level["search"]["recall"].values()) >= 0.9
    retention = level["retention"]
    assert retention["partitions"]["partitions_dropped"] == [retention["oldest_partition"]]
    assert retention["partitions"]["deleted"] == retention["table"]["deleted"] > 0
    converted = level["conversion"]
    assert converted["rows_after"] == converted["rows"] and converted["partitions"] >= 13
    assert "partitions: search p50 ms" in done.stdout
