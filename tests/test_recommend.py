"""recommend_route on the real server and the real model: a hand-made history whose right
answers are known, the objectives, exploration, the fallback, bad arguments, the log and
its outcome view."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from orb_learning import ExecutionRecord, LearningDatabase
from orb_learning.errors import ArgumentError
from orb_learning.routing import RouteOption, rank

SMALL, LARGE = ("small", "default"), ("large", "default")
MIGRATIONS = [
    "Migrate the {t} table to a partitioned schema without downtime",
    "Write an online migration that splits the {t} table by tenant",
    "Backfill the new {t} column in batches and swap the old one out",
    "Move the {t} table to another database with dual writes",
]
DOCS = [
    "Fix a typo in the {t} section of the README",
    "Reword the {t} paragraph of the user guide",
    "Add a missing link to the {t} page of the docs",
    "Correct the spelling of {t} in the changelog",
]
FLAKY = [
    "Stabilise the flaky {t} integration test",
    "Find why the {t} end-to-end test times out on CI",
    "Make the {t} snapshot test deterministic",
    "Quarantine the intermittent {t} test and open an issue",
]
TOPICS = ["orders", "invoices", "users", "payments", "sessions", "events", "carts", "refunds"]
PRICE = {"small": 0.002, "large": 0.10}


def history(now: datetime) -> list[ExecutionRecord]:
    """Both tiers on three kinds of task: the small one always fails migrations and
    succeeds at docs; the large one succeeds at both and costs 50 times more; both succeed
    at every other flaky test."""
    records = []
    for kind, templates in (("migration", MIGRATIONS), ("docs", DOCS), ("flaky", FLAKY)):
        for i, (template, topic) in enumerate(
            (template, topic) for template in templates for topic in TOPICS
        ):
            for tier in ("small", "large"):
                records.append(
                    ExecutionRecord(
                        task_id=uuid.uuid4(),
                        task_type=kind,
                        task_description=template.format(t=topic),
                        repo="shop",
                        model_tier=tier,
                        pool_type="default",
                        routing_confidence=0.5,
                        success=i % 2 == 0
                        if kind == "flaky"
                        else tier == "large" or kind == "docs",
                        duration_seconds=30.0 if tier == "small" else 90.0,
                        cost_estimate=PRICE[tier],
                        actual_cost=PRICE[tier],
                        quality_score=80.0,
                        timestamp=now - timedelta(hours=i + 1),
                    )
                )
    return records


@pytest.fixture
async def shop(db: LearningDatabase) -> LearningDatabase:
    await db.store_executions(history(datetime.now(UTC)))
    return db


async def test_the_large_tier_for_what_only_it_can_do_the_cheap_one_where_both_succeed(
    shop: LearningDatabase,
) -> None:
    hard = await shop.recommend_route(
        "Migrate the shipments table to a partitioned schema without downtime",
        task_type="migration", repo="shop",
    )  # fmt: skip
    assert hard.chosen is not None and hard.chosen.candidate == LARGE
    small = next(o for o in hard.options if o.candidate == SMALL)
    assert small.expected_success is not None and small.expected_success < 0.3
    assert hard.options[0].candidate == LARGE and not hard.fallback
    easy = await shop.recommend_route(
        "Fix a typo in the shipments section of the README", task_type="docs", repo="shop",
        min_success=0.8,
    )  # fmt: skip
    assert easy.chosen is not None and easy.chosen.candidate == SMALL
    assert easy.chosen.meets_min_success
    for option in easy.options:
        assert option.expected_success is not None and option.expected_success > 0.8
        assert option.success_low is not None and option.success_high is not None
        assert option.success_low <= option.expected_success <= option.success_high
        assert option.evidence.neighbours > 0 and option.evidence.task_type_executions == 32
    cheap = next(o for o in easy.options if o.candidate == SMALL)
    assert cheap.expected_cost is not None and cheap.expected_cost == pytest.approx(0.002, rel=0.1)
    assert cheap.expected_duration == pytest.approx(30.0, rel=0.1)
    assert easy.similar and easy.similar[0]["task_type"] == "docs"
    assert [s["similarity"] for s in easy.similar] == sorted(
        (s["similarity"] for s in easy.similar), reverse=True
    )


def test_the_most_likely_option_wins_and_within_one_point_the_cheaper() -> None:
    def option(tier: str, p: float, cost: float) -> RouteOption:
        return RouteOption(tier, "default", p, None, None, cost, None, None)

    tied = rank([option("large", 0.955, 0.1), option("small", 0.95, 0.002)], "success")
    assert [o.model_tier for o in tied] == ["small", "large"]
    apart = rank([option("small", 0.95, 0.002), option("large", 0.97, 0.1)], "success")
    assert [o.model_tier for o in apart] == ["large", "small"]
    unknown = rank([option("a", 0.5, 0.1), RouteOption("b", "p", None, *[None] * 5)], "success")
    assert [o.model_tier for o in unknown] == ["a", "b"]


async def test_min_success_takes_the_cheapest_likely_enough_else_the_most_likely(
    shop: LearningDatabase,
) -> None:
    task = "Write an online migration that splits the shipments table by tenant"
    none = await shop.recommend_route(task, task_type="migration", min_success=1.0)
    assert none.chosen is not None and none.chosen.candidate == LARGE
    assert none.chosen.meets_min_success is False and "no option" in none.reason
    some = await shop.recommend_route(task, task_type="migration", min_success=0.5)
    assert some.chosen is not None and some.chosen.candidate == LARGE
    assert some.chosen.meets_min_success is True
    assert next(o for o in some.options if o.candidate == SMALL).meets_min_success is False


async def test_cost_weight_trades_success_against_cost(shop: LearningDatabase) -> None:
    task = "Fix a typo in the shipments section of the README"
    free = await shop.recommend_route(task, task_type="docs", cost_weight=0.0)
    assert free.options[0].score == max(o.expected_success or 0 for o in free.options)
    heavy = await shop.recommend_route(task, task_type="docs", cost_weight=100.0)
    assert heavy.chosen is not None and heavy.chosen.candidate == SMALL
    for option in heavy.options:
        assert option.expected_success is not None and option.expected_cost is not None
        expected = option.expected_success - 100.0 * option.expected_cost
        assert option.score == pytest.approx(expected)
    assert [o.score for o in heavy.options] == sorted(
        (o.score for o in heavy.options if o.score is not None), reverse=True
    )


async def test_explore_draws_each_option_in_proportion_to_its_chance_of_being_best(
    shop: LearningDatabase,
) -> None:
    """Thompson sampling: the share of draws choosing an option is P(it is best), which
    for two Beta posteriors is computed here by integration and compared (binomial test)."""
    from scipy import integrate, stats

    task = "Make the shipments snapshot test deterministic"
    rng = random.Random(7)
    draws = 600
    chosen = Counter()
    first = None
    for _ in range(draws):
        got = await shop.recommend_route(task, task_type="flaky", explore=True, rng=rng, log=False)
        assert got.chosen is not None and got.explore
        chosen[got.chosen.candidate] += 1
        first = first or got
    assert first is not None
    a, b = (next(o for o in first.options if o.candidate == c) for c in (SMALL, LARGE))
    p_small_best, _ = integrate.quad(
        lambda x: stats.beta.pdf(x, a.alpha, a.beta) * stats.beta.cdf(x, b.alpha, b.beta), 0, 1
    )
    assert 0.05 < p_small_best < 0.95  # both are tried
    test = stats.binomtest(chosen[SMALL], draws, p_small_best)
    assert test.pvalue > 0.001, (chosen, p_small_best)
    greedy = await shop.recommend_route(task, task_type="flaky", log=False)
    assert greedy.chosen is not None and not greedy.explore


async def test_no_history_falls_back_to_the_callers_candidates_in_order(
    db: LearningDatabase,
) -> None:
    got = await db.recommend_route("Anything at all", candidates=[LARGE, SMALL])
    assert got.fallback and got.chosen is not None and got.chosen.candidate == LARGE
    assert [o.candidate for o in got.options] == [LARGE, SMALL]
    assert all(o.expected_success is None for o in got.options)
    assert "no history" in got.reason
    nothing = await db.recommend_route("Anything at all")
    assert nothing.fallback and nothing.chosen is None and nothing.options == ()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"candidates": []}, "candidates must not be empty"),
        ({"candidates": ["small"]}, "each candidate must be a (model_tier, pool_type) pair"),
        ({"candidates": [("small", "")]}, "each candidate must be"),
        ({"min_success": 1.5}, "min_success must be a probability in [0, 1]"),
        ({"min_success": -0.1}, "min_success must be a probability in [0, 1]"),
        ({"min_success": float("nan")}, "min_success must be a probability in [0, 1]"),
        ({"cost_weight": -1.0}, "cost_weight must be a number >= 0"),
        ({"cost_weight": 1.0, "min_success": 0.5}, "not both"),
        ({"complexity_score": 101}, "complexity_score must be at most 100"),
        ({"explore": "yes"}, "explore must be True or False"),
        ({"days_back": -1}, "days_back must be >= 0"),
        ({"task_type": ""}, "task_type"),
    ],
)
async def test_bad_arguments_are_value_errors_naming_the_problem(
    db: LearningDatabase, arguments: dict[str, object], message: str
) -> None:
    with pytest.raises(ArgumentError) as raised:
        await db.recommend_route("Fix the parser", **arguments)  # type: ignore[arg-type]
    assert isinstance(raised.value, ValueError)
    assert message in str(raised.value) and "\n" not in str(raised.value)


async def test_the_log_and_the_outcome_view_answer_how_good_and_how_often_followed(
    shop: LearningDatabase, connection: asyncpg.Connection
) -> None:
    tasks = [
        ("Migrate the shipments table to a partitioned schema without downtime", "migration"),
        ("Fix a typo in the shipments section of the README", "docs"),
        ("Move the shipments table to another database with dual writes", "migration"),
    ]
    made = [await shop.recommend_route(t, task_type=k, repo="shop") for t, k in tasks]
    ran = ["large", "large"]  # the first followed, the second ignored, the third not run
    for recommendation, tier, (task, kind) in zip(made, ran, tasks, strict=False):
        await shop.store_execution(
            ExecutionRecord(
                task_type=kind, task_description=task, repo="shop", model_tier=tier,
                pool_type="default", routing_confidence=0.9, success=True,
                duration_seconds=80.0, cost_estimate=0.1, actual_cost=0.1,
                recommendation_id=recommendation.recommendation_id,
            )
        )  # fmt: skip
    logged = await connection.fetch(
        "SELECT * FROM route_recommendations ORDER BY created_at, recommendation_id"
    )
    assert {r["recommendation_id"] for r in logged} == {m.recommendation_id for m in made}
    row = next(r for r in logged if r["recommendation_id"] == made[0].recommendation_id)
    assert (row["chosen_tier"], row["objective"], row["explore"], row["repo"]) == (
        "large", "success", False, "shop"
    )  # fmt: skip
    assert [o["model_tier"] for o in row["options"]] == [o.model_tier for o in made[0].options]
    summary = await connection.fetchrow(
        "SELECT count(*) AS recommended, count(*) FILTER (WHERE executed) AS executed, "
        "count(*) FILTER (WHERE executed AND NOT followed) AS ignored, "
        "avg(success::int) FILTER (WHERE followed) AS followed_success "
        "FROM route_recommendation_outcomes WHERE created_at > now() - interval '7 days'"
    )
    assert dict(summary) == {
        "recommended": 3, "executed": 2,
        "ignored": 1 if made[1].chosen and made[1].chosen.model_tier == "small" else 0,
        "followed_success": 1.0,
    }  # fmt: skip
    quiet = await shop.recommend_route(tasks[0][0], log=False)
    assert (
        await connection.fetchval(
            "SELECT count(*) FROM route_recommendations WHERE recommendation_id = $1",
            quiet.recommendation_id,
        )
        == 0
    )


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "ORB_LEARNING_DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "orb_learning.cli", *args],
        env=environment, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


async def test_the_command_prints_the_ranked_table_the_choice_and_the_similar(
    shop: LearningDatabase, database_url: str, connection: asyncpg.Connection
) -> None:
    task = "Migrate the shipments table to a partitioned schema without downtime"
    shown = cli(
        "--dsn", database_url, "recommend", task, "--task-type", "migration", "--repo", "shop",
        "--min-success", "0.8",
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split()[:4] == ["chosen", "model_tier", "pool_type", "expected_success"]
    assert lines[2].split()[:3] == ["->", "large", "default"]
    assert "Chosen: large / default: the cheapest option expected to succeed at least 80%" in (
        shown.stdout
    )
    assert "Most similar past executions:" in shown.stdout
    as_json = cli(
        "--dsn", database_url, "recommend", task, "--task-type", "migration",
        "--cost-weight", "5", "--no-log",
        "--candidate", "small:default", "--candidate", "large:default", "--json",
    )  # fmt: skip
    assert as_json.returncode == 0, as_json.stderr
    got = json.loads(as_json.stdout)
    assert [o["model_tier"] for o in got["options"]] == ["large", "small"]
    assert got["objective"] == "cost_weight" and got["cost_weight"] == 5.0
    assert got["options"][0]["evidence"]["neighbours"] > 0
    logged = await connection.fetchval("SELECT count(*) FROM route_recommendations")
    assert logged == 1  # the first, not the --no-log one


async def test_an_option_never_run_is_scored_and_explored_under_a_cost_weight(
    shop: LearningDatabase,
) -> None:
    """Its cost is unknown: scored at the highest known cost, not left out (else nothing
    would ever learn it)."""
    new = ("huge", "default")
    task = "Reword the shipments paragraph of the user guide"
    made = await shop.recommend_route(task, candidates=[SMALL, new], cost_weight=1.0, log=False)
    unknown = next(o for o in made.options if o.candidate == new)
    assert unknown.expected_cost is None and unknown.score is not None
    small = next(o for o in made.options if o.candidate == SMALL)
    assert unknown.score == pytest.approx(unknown.expected_success - 1.0 * small.expected_cost)
    rng = random.Random(3)
    picks = Counter()
    for _ in range(60):
        drawn = await shop.recommend_route(
            task, candidates=[SMALL, new], cost_weight=1.0, explore=True, log=False, rng=rng
        )
        assert drawn.chosen is not None
        picks[drawn.chosen.candidate] += 1
    assert picks[new] > 0, picks


async def test_a_stale_fit_is_redone_in_the_background_while_the_old_model_answers(
    shop: LearningDatabase,
) -> None:
    task = "Make the shipments snapshot test deterministic"
    fits = shop._routes.fits
    await shop.recommend_route(task, task_type="flaky", log=False)  # the first fit: waited for
    (key,) = fits._fitted
    first = fits._fitted[key]
    fits.ttl = 0.0  # stale from now on
    answered = await shop.recommend_route(task, task_type="flaky", log=False)
    assert answered.chosen is not None
    assert key in fits._refits and fits._fitted[key] is first  # answered by the old model
    await shop.settle_route_fits()
    assert fits._fitted[key] is not first and not fits._refits  # replaced, nothing running
    fits.ttl = 900.0
    await shop.close()  # and closing cancels any refit still running
    assert not fits._refits
