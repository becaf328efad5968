"""orb-learning: a learning-analytics store for AI coding-agent orchestrators, on
PostgreSQL + pgvector.

Importing the package is light: the embedding model (torch, sentence-transformers) loads
on first use or in ``LearningDatabase.initialize()``.
"""

from __future__ import annotations

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
