"""The public API as callers and type checkers see it: the settings as typed keyword-only
parameters with the documented defaults, and read methods whose rows have exactly the keys
their TypedDicts declare."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from datetime import UTC, datetime, timedelta

import orb_learning
from orb_learning import LearningDatabase, rows
from orb_learning.config import Settings
from orb_learning.sample import generate
from tests.factories import unit_vectors

RENAMED = {"data_dir": "database_path", "redact_secrets": "redact"}
FROM_ENVIRONMENT = {"dsn", "database_path", "embedding_model", "embedding_backend", "pool_size",
                    "redact", "otlp_max_body_bytes", "read_dsns", "max_replica_lag"}  # fmt: skip


def test_every_setting_is_a_typed_keyword_only_parameter_with_its_default() -> None:
    parameters = inspect.signature(LearningDatabase.__init__).parameters
    hints = typing.get_type_hints(LearningDatabase.__init__)
    for field in dataclasses.fields(Settings):
        name = RENAMED.get(field.name, field.name)
        assert name in parameters, f"{name} is not a parameter of LearningDatabase()"
        parameter = parameters[name]
        assert name in hints, f"{name} has no type"
        if name != "dsn":
            assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, name
        if name in FROM_ENVIRONMENT:
            assert parameter.default is None, f"{name}: None takes the environment"
        else:
            assert parameter.default == field.default, (name, parameter.default, field.default)
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def test_the_package_exports_what_it_documents() -> None:
    for name in orb_learning.__all__:
        assert hasattr(orb_learning, name), name
    internal = [m for m in vars(orb_learning) if m.startswith("_") and not m.startswith("__")]
    assert all(name not in orb_learning.__all__ for name in internal)


async def test_read_rows_have_exactly_the_declared_keys(db: LearningDatabase) -> None:
    now = datetime.now(UTC)
    records = [r.model_copy(update={"timestamp": now - timedelta(hours=2)}) for r in generate(40)]
    await db.store_executions(records, embeddings=unit_vectors(40))
    await db.refresh_views()
    calls = {
        rows.SimilarExecution: await db.find_similar_executions(
            records[0].task_description, days_back=None, threshold=-1
        ),
        rows.TierPerformance: await db.get_tier_performance(days_back=1),
        rows.PoolPerformance: await db.get_pool_performance(days_back=1),
        rows.SolutionPattern: await db.get_solution_patterns(min_usage=1),
        rows.ViewFreshness: await db.view_freshness(),
    }
    for kind, answer in calls.items():
        assert answer, f"no {kind.__name__} rows to check"
        declared = set(typing.get_type_hints(kind))
        for row in answer:
            assert set(row) == declared, (kind.__name__, set(row) ^ declared)
