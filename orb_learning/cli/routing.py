"""``orb-learning recommend | evaluate-routing``: a route for a task, with its estimates and
the executions behind them; and the offline evaluation of the recommender on outcome data."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .common import add_json_flag, non_negative_int, open_database, positive_int, show_json

if TYPE_CHECKING:
    from ..evaluation import RoutingEvaluation
    from ..routing import RouteRecommendation

OPTIONS = ["chosen", "model_tier", "pool_type", "expected_success", "interval_90",
           "expected_cost", "expected_duration", "neighbours", "score"]  # fmt: skip
SIMILAR = ["similarity", "task_type", "model_tier", "pool_type", "success", "actual_cost",
           "task_description"]  # fmt: skip
OFFLINE = [
    "method",
    "apgr",
    "apgr_pooled",
    "cpt50",
    "cpt80",
    "cost_at_large_minus_1pt",
    "ece",
    "brier",
]
HISTORY = ["method", "tasks", "ece", "brier", "log_loss"]
REPLAY = ["policy", "cost_weight", "steps", "success", "cost", "reward"]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    recommend = commands.add_parser("recommend", help="which tier and pool should run a task")
    recommend.add_argument("text", help="the task description")
    recommend.add_argument("--task-type", help="the task's type, e.g. refactor (default: none)")
    recommend.add_argument("--repo", help="only this repo's history (default: all repos)")
    recommend.add_argument(
        "--complexity", type=_score, metavar="0-100", help="the router's complexity estimate"
    )
    recommend.add_argument(
        "--candidate", action="append", type=_candidate, metavar="TIER:POOL",
        help="a candidate, repeatable (default: the pairs seen in the window)",
    )  # fmt: skip
    objective = recommend.add_mutually_exclusive_group()
    objective.add_argument(
        "--min-success",
        type=_probability,
        metavar="P",
        help="choose the cheapest option at least this likely to succeed",
    )
    objective.add_argument(
        "--cost-weight",
        type=_non_negative,
        metavar="WEIGHT",
        help="choose by expected success - WEIGHT x expected cost (USD)",
    )
    recommend.add_argument(
        "--explore",
        action="store_true",
        help="choose by Thompson sampling (tries under-tried options)",
    )
    recommend.add_argument(
        "--days-back", type=non_negative_int, default=90, metavar="DAYS", help="history window"
    )
    recommend.add_argument(
        "--no-log", dest="log", action="store_false", help="do not write route_recommendations"
    )
    add_json_flag(recommend)
    recommend.set_defaults(handler=_recommend)

    evaluate = commands.add_parser(
        "evaluate-routing", help="evaluate recommendations on outcome data (both tiers known)"
    )
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--data", type=Path, metavar="FILE", help="a CSV of outcomes as in data/routing/"
    )
    source.add_argument(
        "--history", action="store_true", help="the database's own executions, by a time split"
    )
    evaluate.add_argument(
        "--test-days",
        type=positive_int,
        default=7,
        metavar="DAYS",
        help="--history: the last DAYS days are the new tasks",
    )
    evaluate.add_argument(
        "--history-days",
        type=positive_int,
        default=90,
        metavar="DAYS",
        help="--history: the DAYS days before them are the history",
    )
    evaluate.add_argument(
        "--folds", type=positive_int, default=5, metavar="K", help="cross-validation folds"
    )
    evaluate.add_argument(
        "--seed",
        type=non_negative_int,
        default=0,
        help="seed of the shuffle, the logged tiers and the replay",
    )
    evaluate.add_argument(
        "--limit", type=positive_int, metavar="N", help="a random slice of N tasks (default: all)"
    )
    evaluate.add_argument(
        "--replay-tasks",
        type=non_negative_int,
        metavar="N",
        help="tasks streamed by the replay (default: all; 0: no replay)",
    )
    add_json_flag(evaluate)
    evaluate.set_defaults(handler=_evaluate)


def _probability(text: str) -> float:
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a probability in [0, 1], got {value}")
    return value


def _non_negative(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _score(text: str) -> int:
    value = non_negative_int(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"must be 0 to 100, got {value}")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def _candidate(text: str) -> tuple[str, str]:
    tier, separator, pool = text.partition(":")
    if not separator or not tier.strip() or not pool.strip():
        raise argparse.ArgumentTypeError(f"a candidate is TIER:POOL, got {text!r}")
    return tier.strip(), pool.strip()


async def _recommend(args: argparse.Namespace) -> int:
    async with open_database(args, needs_model=True) as db:
        made = await db.recommend_route(
            args.text, task_type=args.task_type, repo=args.repo,
            complexity_score=args.complexity, candidates=args.candidate,
            min_success=args.min_success, cost_weight=args.cost_weight,
            explore=args.explore, days_back=args.days_back, log=args.log,
        )  # fmt: skip
    if args.json:
        show_json(_as_json(made))
        return 0
    print(render_recommendation(made))
    return 0


def _as_json(made: RouteRecommendation) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(made)


def render_recommendation(made: RouteRecommendation) -> str:
    """The ranked options, the choice and why, and the executions behind it."""
    from .tables import render

    chosen = made.chosen.candidate if made.chosen else None
    rows = [
        {
            "chosen": "->" if option.candidate == chosen else "",
            "model_tier": option.model_tier,
            "pool_type": option.pool_type,
            "expected_success": option.expected_success,
            "interval_90": _interval(option.success_low, option.success_high),
            "expected_cost": option.expected_cost,
            "expected_duration": option.expected_duration,
            "neighbours": option.evidence.neighbours,
            "score": option.score,
        }
        for option in made.options
    ]
    parts = [render(rows, OPTIONS)]
    pick = f"{chosen[0]} / {chosen[1]}" if chosen else "none"
    parts.append(f"\nChosen: {pick}: {made.reason}.")
    parts.append(f"Recommendation id: {made.recommendation_id}")
    if made.similar:
        parts.append("\nMost similar past executions:")
        parts.append(render(list(made.similar), SIMILAR))
    return "\n".join(parts)


def _interval(low: float | None, high: float | None) -> str | None:
    return None if low is None or high is None else f"{low:.2f}-{high:.2f}"


async def _evaluate(args: argparse.Namespace) -> int:
    from ..evaluation import evaluate_routing

    if args.history:
        return await _evaluate_history(args)
    server = args.dsn  # scratch databases on that server; else an embedded one of its own
    result = await evaluate_routing(
        args.data, folds=args.folds, seed=args.seed, limit=args.limit,
        replay_tasks=args.replay_tasks, server_url=server,
    )  # fmt: skip
    if args.json:
        show_json(result.as_json())
        return 0
    print(render_evaluation(result))
    return 0


async def _evaluate_history(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ..evaluation import evaluate_history
    from .tables import render

    async with open_database(args) as source:  # scratch: an embedded server of its own
        result = await evaluate_history(
            source, test_days=args.test_days, days_back=args.history_days
        )
    if args.json:
        show_json(asdict(result))
        return 0
    if not result.tasks:
        print(
            f"Nothing to evaluate: no execution since {result.split_at:%Y-%m-%d %H:%M} UTC "
            f"of a tier and pool the {result.history} before it ran (--test-days, "
            "--history-days)."
        )
        return 0
    print(
        f"{result.tasks} executions since {result.split_at:%Y-%m-%d %H:%M} UTC predicted from "
        f"the {result.history} before (the tier that ran each: its outcome alone is known)"
    )
    print(render([asdict(s) for s in result.scores], HISTORY))
    print(
        f"\nRan the recommended option: {result.followed} of {result.tasks}; success "
        f"{_share(result.success_followed)} when they did, {_share(result.success_not_followed)} "
        "when they did not."
    )
    return 0


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def render_evaluation(result: RoutingEvaluation) -> str:
    """The offline table and the replay table."""
    from dataclasses import asdict

    from .tables import render

    head = (
        f"{result.data}: {result.tasks} tasks, {result.folds} folds (seed {result.seed}); "
        f"small {result.small_success:.3f}, large {result.large_success:.3f} correct; "
        f"{result.seconds:.0f} s"
    )
    parts = [head, "", render([asdict(s) for s in result.offline], OFFLINE)]
    if result.replay:
        parts += [
            "",
            "Replay (counted steps only):",
            render([asdict(r) for r in result.replay], REPLAY),
        ]
    return "\n".join(parts)
