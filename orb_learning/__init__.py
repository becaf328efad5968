"""orb-learning: a learning-analytics store for AI coding-agent orchestrators, on
PostgreSQL + pgvector.

Importing the package is light: each public name loads its module on first use (PEP 562),
so ``orb-learning --help`` and ``import orb_learning.errors`` pay for neither SQLAlchemy nor
pydantic, and the embedding model (torch, sentence-transformers) loads on first use or in
``LearningDatabase.initialize()``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._dead_letters import DeadLetter
    from .config import Settings
    from .database import LearningDatabase
    from .embeddings import AsyncEmbeddingService, Embedder, SentenceTransformerEmbedder
    from .errors import (
        ArchiveError,
        ArgumentError,
        CommitOutcomeUnknownError,
        ConfigurationError,
        DatabaseError,
        DatabaseUnavailableError,
        DataError,
        EmbeddedServerUnavailable,
        EmbeddingModelError,
        InsufficientPrivilegeError,
        IntegrityError,
        InvalidRecordError,
        NotInitializedError,
        OrbLearningError,
        ProgramLimitError,
        QueryTimeoutError,
        SchemaNotReadyError,
        TransactionRetryError,
        UnknownExecutionError,
    )
    from .models import ErrorType, ExecutionRecord, FeedbackRecord, QualityPolicy, SolutionRecord
    from .routing import RouteOption, RouteRecommendation
    from .rows import (
        PoolPerformance,
        SimilarExecution,
        SolutionPattern,
        TierPerformance,
        ViewFreshness,
    )
    from .telemetry import InProcessMessageBus, MessageBus, ShutdownReport, TelemetryCapture

__version__ = "0.2.0"

_EXPORTS = {
    "DeadLetter": "._dead_letters",
    "Settings": ".config",
    "LearningDatabase": ".database",
    "AsyncEmbeddingService": ".embeddings",
    "Embedder": ".embeddings",
    "SentenceTransformerEmbedder": ".embeddings",
    "ArchiveError": ".errors",
    "ArgumentError": ".errors",
    "CommitOutcomeUnknownError": ".errors",
    "ConfigurationError": ".errors",
    "DatabaseError": ".errors",
    "DatabaseUnavailableError": ".errors",
    "DataError": ".errors",
    "EmbeddedServerUnavailable": ".errors",
    "EmbeddingModelError": ".errors",
    "InsufficientPrivilegeError": ".errors",
    "IntegrityError": ".errors",
    "InvalidRecordError": ".errors",
    "NotInitializedError": ".errors",
    "OrbLearningError": ".errors",
    "ProgramLimitError": ".errors",
    "QueryTimeoutError": ".errors",
    "SchemaNotReadyError": ".errors",
    "TransactionRetryError": ".errors",
    "UnknownExecutionError": ".errors",
    "ErrorType": ".models",
    "ExecutionRecord": ".models",
    "FeedbackRecord": ".models",
    "QualityPolicy": ".models",
    "SolutionRecord": ".models",
    "RouteOption": ".routing",
    "RouteRecommendation": ".routing",
    "PoolPerformance": ".rows",
    "SimilarExecution": ".rows",
    "SolutionPattern": ".rows",
    "TierPerformance": ".rows",
    "ViewFreshness": ".rows",
    "InProcessMessageBus": ".telemetry",
    "MessageBus": ".telemetry",
    "ShutdownReport": ".telemetry",
    "TelemetryCapture": ".telemetry",
}
"""Each public name and the module that defines it."""

__all__ = [
    "ArchiveError",
    "ArgumentError",
    "AsyncEmbeddingService",
    "CommitOutcomeUnknownError",
    "ConfigurationError",
    "DataError",
    "DatabaseError",
    "DatabaseUnavailableError",
    "DeadLetter",
    "EmbeddedServerUnavailable",
    "Embedder",
    "EmbeddingModelError",
    "ErrorType",
    "ExecutionRecord",
    "FeedbackRecord",
    "InProcessMessageBus",
    "InsufficientPrivilegeError",
    "IntegrityError",
    "InvalidRecordError",
    "LearningDatabase",
    "MessageBus",
    "NotInitializedError",
    "OrbLearningError",
    "PoolPerformance",
    "ProgramLimitError",
    "QualityPolicy",
    "QueryTimeoutError",
    "RouteOption",
    "RouteRecommendation",
    "SchemaNotReadyError",
    "SentenceTransformerEmbedder",
    "Settings",
    "ShutdownReport",
    "SimilarExecution",
    "SolutionPattern",
    "SolutionRecord",
    "TelemetryCapture",
    "TierPerformance",
    "TransactionRetryError",
    "UnknownExecutionError",
    "ViewFreshness",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
