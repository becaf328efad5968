"""Names of the embedding backends, the default one, and how a name is chosen.

Every backend runs the same model (all-MiniLM-L6-v2 by default). ``torch`` is the
reference: sentence-transformers in float32. The ONNX ones run an export of the same
weights with ONNX Runtime; they are offered only because their embeddings stay within
0.99 cosine of the reference on every sentence of a fixed set (tests/test_embedding_backends.py).
The default was picked by measurement: docs/decisions/0006-embedding-backend.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import MappingProxyType

from orb_learning.errors import ConfigurationError

BACKEND_ENV_VAR = "ORB_LEARNING_EMBEDDING_BACKEND"

BACKENDS: Mapping[str, str] = MappingProxyType(
    {
        # name: what runs it
        "torch": "torch",  # sentence-transformers, float32: the reference
        "onnx": "fp32",  # ONNX Runtime, the exported graph in float32
        "onnx-int8": "int8",  # ONNX Runtime, 8-bit weights in blocks of 32, int8 products
    }
)
DEFAULT_BACKEND = "onnx-int8"


def resolve_backend(argument: str | None = None) -> str:
    """The explicit argument wins, then ``$ORB_LEARNING_EMBEDDING_BACKEND``, then the default."""
    name = (argument or "").strip() or os.environ.get(BACKEND_ENV_VAR, "").strip()
    name = name.lower() or DEFAULT_BACKEND
    if name not in BACKENDS:
        raise ConfigurationError(
            f"unknown embedding backend {name!r}; choose one of {', '.join(BACKENDS)}"
        )
    return name
