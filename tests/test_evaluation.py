"""``orb-learning evaluate-routing`` on a 200-task slice of the MMLU dev data (the real
command, the real model, scratch databases on the test server): it runs, and its figures
are internally consistent. How good they are is the benchmark's business (bench/)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from orb_learning import LearningDatabase, sample
from orb_learning.errors import ArgumentError
from orb_learning.evaluation import _metrics as metrics, load

DATA = Path(__file__).resolve().parent.parent / "data" / "routing"


@pytest.fixture(scope="module")
def evaluated(server_url: str) -> dict[str, object]:
    environment = {k: v for k, v in os.environ.items() if k != "ORB_LEARNING_DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "orb_learning.cli", "--dsn", server_url, "evaluate-routing",
         "--data", str(DATA / "mmlu_dev.csv"), "--limit", "200", "--replay-tasks", "60",
         "--json"],
        env=environment, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_offline_figures_are_consistent(evaluated: dict[str, object]) -> None:
    assert evaluated["tasks"] == 200 and evaluated["folds"] == 5
    scores = {s["method"]: s for s in evaluated["offline"]}  # type: ignore[attr-defined]
    assert set(scores) == {"recommender", "per_task_type", "knn", "random", "oracle"}
    assert scores["random"]["apgr"] == pytest.approx(0.5)  # ties in expectation: the diagonal
    for name, s in scores.items():
        assert s["apgr"] <= scores["oracle"]["apgr"] + 1e-9, name
        assert 0.0 <= s["cpt50"] <= s["cpt80"] <= 1.0, name
        if name not in ("random", "oracle"):
            assert 0.0 <= s["ece"] <= 1.0 and 0.0 <= s["brier"] <= 1.0, name
    folds = scores["recommender"]["apgr_folds"]
    noise = 3 * np.std(folds) / math.sqrt(len(folds))
    assert scores["recommender"]["apgr"] >= 0.5 - noise, folds  # random's, within noise
    assert scores["oracle"]["apgr"] > 1.0  # the oracle also avoids the large tier's misses


def test_replay_counts_only_the_steps_matching_the_logged_tier(
    evaluated: dict[str, object],
) -> None:
    replay = evaluated["replay"]
    assert [(r["policy"], r["cost_weight"]) for r in replay] == [  # type: ignore[attr-defined]
        (policy, weight)
        for weight in (0.0, 10.0)
        for policy in ("random", "per_type_greedy", "greedy", "thompson")
    ]
    for r in replay:  # type: ignore[attr-defined]
        assert 0 < r["steps"] <= 60 and 0.0 <= r["success"] <= 1.0
        assert r["reward"] == pytest.approx(r["success"] - r["cost_weight"] * r["cost"])
        if r["policy"] == "random":
            assert r["steps"] == 60  # the logging policy itself: every step counts
        else:  # about half the steps match a uniformly random logged tier
            assert 12 <= r["steps"] <= 48, r


def test_the_curve_follows_randoms_diagonal_and_the_oracles_corner() -> None:
    small = np.array([1, 0, 1, 0, 0, 1, 1, 0])
    large = np.array([1, 1, 1, 0, 1, 1, 0, 1])
    cost_small, cost_large = np.full(8, 1.0), np.full(8, 10.0)
    constant = metrics.curve(np.zeros(8), small, large, cost_small, cost_large)
    assert metrics.apgr(constant) == pytest.approx(0.5)
    assert metrics.calls_to_recover(constant, 0.5) == pytest.approx(0.5)
    oracle = metrics.curve((large - small).astype(float), small, large, cost_small, cost_large)
    # three tasks only the large tier solves, one only the small: PGR peaks at 3/2
    assert oracle.gap_recovered().max() == pytest.approx(1.5)
    assert metrics.calls_to_recover(oracle, 0.5) == pytest.approx(1 / 8)  # 1.5 at 3/8
    # quality 0.5 -> 0.875 over the first 3 tasks (cost 1 -> 1 + 3 x 9 / 8 per task):
    # 0.74 is reached 64% of the way
    assert metrics.cost_at_quality(oracle, 0.74) == pytest.approx(1 + 0.64 * 27 / 8)
    assert metrics.expected_calibration_error(np.array([0.9, 0.9]), np.array([1, 1])) == (
        pytest.approx(0.1)
    )
    assert metrics.brier(np.array([1.0, 0.0]), np.array([1, 1])) == pytest.approx(0.5)


def test_bad_files_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "m.csv"
    missing.write_text("benchmark,prompt\nx,y\n")
    with pytest.raises(ArgumentError, match="missing columns"):
        load(missing)
    wrong = tmp_path / "w.csv"
    rows = "".join(f"b,t,p{i},1,{2 if i == 3 else 0}\n" for i in range(12))
    wrong.write_text("benchmark,task_type,prompt,small_correct,large_correct\n" + rows)
    with pytest.raises(ArgumentError, match=r"w.csv:5: large_correct must be 0 or 1"):
        load(wrong)
    with pytest.raises(ArgumentError, match=r"nope\.csv"):
        load(tmp_path / "nope.csv")


async def test_the_history_mode_splits_by_time_and_never_shows_a_task_its_own_outcome(
    db: LearningDatabase, database_url: str
) -> None:
    records = sample.generate(400, seed=21)
    await db.store_executions(records)
    cutoff = datetime.now(UTC) - timedelta(days=30)
    tests = [r for r in records if r.timestamp >= cutoff]
    history = [r for r in records if cutoff - timedelta(days=90) <= r.timestamp < cutoff]
    environment = {k: v for k, v in os.environ.items() if k != "ORB_LEARNING_DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "orb_learning.cli", "--dsn", database_url, "evaluate-routing",
         "--history", "--test-days", "30", "--json"],
        env=environment, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["history"] == len(history) and 0 < result["tasks"] <= len(tests)
    assert {s["method"] for s in result["scores"]} == {"recommender", "per_task_type"}
    for s in result["scores"]:
        assert s["tasks"] == result["tasks"] and 0 <= s["ece"] <= 1 and 0 <= s["brier"] <= 1
    assert 0 <= result["followed"] <= result["tasks"]
