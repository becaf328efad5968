"""orb-learning: a learning-analytics store for AI coding-agent orchestrators, on
PostgreSQL + pgvector.

Importing the package is light: the embedding model (torch, sentence-transformers) loads
on first use or in ``LearningDatabase.initialize()``.
"""

from __future__ import annotations

from ._dead_letters import DeadLetter
from .database import LearningDatabase
from .embeddings import AsyncEmbeddingService, Embedder, SentenceTransformerEmbedder
from .errors import (
    ConfigurationError,
    DatabaseError,
    DatabaseUnavailableError,
    EmbeddedServerUnavailable,
    EmbeddingModelError,
    IntegrityError,
    InvalidRecordError,
    NotInitializedError,
    OrbLearningError,
    SchemaNotReadyError,
    UnknownExecutionError,
)
from .models import ErrorType, ExecutionRecord, FeedbackRecord, QualityPolicy, SolutionRecord
from .telemetry import InProcessMessageBus, MessageBus, TelemetryCapture

__version__ = "0.2.0"

__all__ = [
    "AsyncEmbeddingService",
    "ConfigurationError",
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
    "IntegrityError",
    "InvalidRecordError",
    "LearningDatabase",
    "MessageBus",
    "NotInitializedError",
    "OrbLearningError",
    "QualityPolicy",
    "SchemaNotReadyError",
    "SentenceTransformerEmbedder",
    "SolutionRecord",
    "TelemetryCapture",
    "UnknownExecutionError",
    "__version__",
]
