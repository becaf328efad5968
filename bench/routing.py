"""Route recommendations: their latency at each level, and their quality on real outcomes.

* **Latency** (per level): ``recommend_route`` with the issue's target (p50 <= 20 ms at
  1,000,000 rows) in three cases: two candidates given, not logged; the default candidates
  (the window's pairs, cached) and logged, the default; the frequent repo's history. The
  baseline in the same rounds is ``find_similar_executions(limit=10)``: what a router
  called before. The views are refreshed first (as the refresher keeps them); the query's
  embedding is precomputed (:class:`bench.data.QueryTable`); the first call, which fits
  the model (cached for 15 minutes), is timed apart.
* **Quality** (once): ``orb-learning evaluate-routing`` on ``data/routing/``'s GSM8K and
  MMLU dev files (5 folds, seed 0, the replay over every task), the figures the issue's
  targets name: APGR against per-task-type and kNN alone, ECE, Thompson against greedy.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orb_learning.evaluation import evaluate_routing

from .data import FREQUENT_REPO, Level, open_db
from .tables import Table
from .timing import Reference, log, rounds

DATA = Path(__file__).resolve().parent.parent / "data" / "routing"
FILES = ("gsm8k.csv", "mmlu_dev.csv")
CANDIDATES = [("small", "local"), ("large", "local")]


@dataclass(frozen=True)
class Parameters:
    calls: int = 200
    budget: float = 10.0
    limit: int | None = None
    replay_tasks: int | None = None


QUICK = Parameters(calls=30, budget=2.0, limit=200, replay_tasks=100)


async def latency(level: Level, reference: Reference, p: Parameters) -> dict[str, Any]:
    """The three cases and the search baseline, in the same rounds."""
    log(f"[{level.rows:,}] routing: recommend_route against find_similar_executions")
    async with open_db(level.url, level.queries) as db:
        await db.refresh_views()  # as the refresher keeps them: the live tail stays short
        names = itertools.cycle(level.names)
        cases = {
            "2 candidates": lambda: db.recommend_route(
                next(names), task_type="refactor", candidates=CANDIDATES, log=False
            ),
            "default candidates, logged": lambda: db.recommend_route(
                next(names), task_type="refactor"
            ),
            "frequent repo": lambda: db.recommend_route(
                next(names),
                task_type="refactor",
                repo=FREQUENT_REPO,
                candidates=CANDIDATES,
                log=False,
            ),
            "find_similar_executions": lambda: db.find_similar_executions(
                next(names), limit=10, threshold=-1.0
            ),
        }
        first = {}
        for repo in (None, FREQUENT_REPO):  # the fit, once per filter
            started = time.perf_counter()
            await db.recommend_route(next(names), task_type="refactor", repo=repo, log=False)
            first[repo or "all repos"] = round(time.perf_counter() - started, 3)
        timed = await rounds(cases, reference, calls=p.calls, budget=p.budget)
    return {"rows": level.rows, "first_call_seconds": first, **timed}


async def quality(url: str, p: Parameters) -> dict[str, Any]:
    """``evaluate_routing`` on each file, on scratch databases of ``url``'s server."""
    files: dict[str, Any] = {}
    for name in FILES:
        log(f"routing: evaluate-routing on {name}")
        result = await evaluate_routing(
            DATA / name, limit=p.limit, replay_tasks=p.replay_tasks, server_url=url
        )
        files[name.removesuffix(".csv")] = result.as_json()
    return {"files": files}


def tables(part: dict[str, Any]) -> list[Table]:
    """RESULTS.md's routing section: each file's offline table and replay table."""
    out = []
    for data, result in part.get("quality", {}).get("files", {}).items():
        offline = Table(
            ["method", "APGR (folds' mean)", "APGR pooled", "CPT(50%)", "CPT(80%)",
             "USD/task at large - 1 pt", "ECE", "Brier"],
            title=f"{data}: {result['tasks']} tasks, {result['folds']} folds",
        )  # fmt: skip
        for s in result["offline"]:
            offline.add(
                s["method"], f"{s['apgr']:.3f}", f"{s['apgr_pooled']:.3f}", f"{s['cpt50']:.3f}",
                f"{s['cpt80']:.3f}", _usd(s["cost_at_large_minus_1pt"]), _fixed(s["ece"]),
                _fixed(s["brier"]),
            )  # fmt: skip
        replay = Table(
            ["policy", "cost weight", "counted steps", "success", "USD/step", "reward"],
            title=f"{data}: replay over {result['tasks']} tasks (Li et al.)",
        )
        for r in result["replay"]:
            replay.add(
                r["policy"], f"{r['cost_weight']:g}", r["steps"], f"{r['success']:.3f}",
                _usd(r["cost"]), f"{r['reward']:.4f}",
            )  # fmt: skip
        out += [offline, replay]
    return out


def _usd(value: float | None) -> str:
    return "-" if value is None else f"{value:.6f}"


def _fixed(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
