"""Sentence embeddings of task descriptions: the offline model, its backends, its asyncio face.

Every name of the former ``orb_learning/embeddings.py`` module is importable from here.
"""

from __future__ import annotations

from ._model_files import DEFAULT_MODEL, MODEL_ENV_VAR, resolve_model_name
from ._service import AsyncEmbeddingService, CacheInfo
from .backends import BACKEND_ENV_VAR, BACKENDS, DEFAULT_BACKEND, resolve_backend
from .model import SCHEMA_DIMENSION, Embedder, SentenceTransformerEmbedder

__all__ = [
    "BACKENDS",
    "BACKEND_ENV_VAR",
    "DEFAULT_BACKEND",
    "DEFAULT_MODEL",
    "MODEL_ENV_VAR",
    "SCHEMA_DIMENSION",
    "AsyncEmbeddingService",
    "CacheInfo",
    "Embedder",
    "SentenceTransformerEmbedder",
    "resolve_backend",
    "resolve_model_name",
]
