"""The ONNX Runtime backend: a Rust tokenizer, an exported graph, pooling in NumPy.

It reproduces what sentence-transformers computes for a model made of a Transformer,
a Pooling and optionally a Normalize module (all-MiniLM-L6-v2 is one): same tokenizer,
same truncation, same pooling, unit-norm rows. Anything else is refused with a pointer
to the ``torch`` backend rather than computed differently. torch is not imported here:
it is needed once, to export the graph (see :mod:`.onnx_export`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orb_learning.errors import EmbeddingModelError

from . import _onnx_export as onnx_export

if TYPE_CHECKING:
    import numpy as np
    from tokenizers import Encoding

TOKENS_PER_RUN = 256  # texts x padded length of one ONNX run

_POOLING_MODES = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
}


@dataclass(frozen=True)
class Layout:
    """What the sentence-transformers configuration files say the model computes."""

    max_seq_length: int
    lowercase: bool
    pooling: str  # "mean", "cls" or "max"


def _json(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def read_layout(directory: Path, name: str) -> Layout:
    """The layout of a local model directory, or an error naming the torch backend."""
    unsupported = (
        f"the ONNX backends run Transformer + Pooling (+ Normalize) models; {name} "
        "{what}: use the torch backend (ORB_LEARNING_EMBEDDING_BACKEND=torch)"
    )
    modules_file = directory / "modules.json"
    try:
        modules = json.loads(modules_file.read_text()) if modules_file.exists() else []
    except (OSError, ValueError) as exc:
        raise EmbeddingModelError(f"cannot read {modules_file}: {exc}") from exc
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    supported = kinds[:2] == ["Transformer", "Pooling"] and kinds[2:] in ([], ["Normalize"])
    if modules and not supported:
        raise EmbeddingModelError(unsupported.format(what=f"has modules {kinds}"))
    pooling = "mean"  # what sentence-transformers adds to a bare Transformer
    if modules:
        flags = _json(directory / modules[1].get("path", "") / "config.json")
        chosen = [mode for key, mode in _POOLING_MODES.items() if flags.get(key)]
        others = [k for k, v in flags.items() if k.startswith("pooling_mode") and v]
        if len(chosen) != 1 or len(others) != 1:
            raise EmbeddingModelError(unsupported.format(what=f"pools with {others}"))
        pooling = chosen[0]
    settings = _json(directory / "sentence_bert_config.json")
    config = _json(directory / "config.json")
    limit = settings.get("max_seq_length") or min(
        int(config.get("max_position_embeddings", 512)),
        int(_json(directory / "tokenizer_config.json").get("model_max_length", 512)),
    )
    return Layout(int(limit), bool(settings.get("do_lower_case", False)), pooling)


class OnnxRunner:
    """One ONNX Runtime session and its tokenizer; ``encode`` is called from one thread."""

    def __init__(
        self, session: Any, tokenizer: Any, layout: Layout, batch_size: int, pad_id: int
    ) -> None:
        self.session, self.tokenizer, self.layout = session, tokenizer, layout
        self.batch_size, self.pad_id = batch_size, pad_id
        self.inputs = {i.name for i in session.get_inputs()}
        self.dimension = int(session.get_outputs()[0].shape[-1])

    @classmethod
    def load(
        cls, directory: Path, name: str, variant: str, batch_size: int, threads: int | None
    ) -> OnnxRunner:
        """The cached graph of ``variant`` (exported first if missing), checked."""
        layout = read_layout(directory, name)
        if not (directory / "tokenizer.json").is_file():
            raise EmbeddingModelError(
                f"{name} has no tokenizer.json (a fast tokenizer), which the ONNX backends "
                "need: use the torch backend (ORB_LEARNING_EMBEDDING_BACKEND=torch)"
            )
        path = onnx_export.ensure_model(directory, name, variant)
        runner = cls.open(directory, layout, path, batch_size, threads)
        runner.check(path.with_name("reference.npy"), name, variant)
        return runner

    @classmethod
    def open(
        cls,
        directory: Path,
        layout: Layout,
        path: Path,
        batch_size: int,
        threads: int | None,
        *,
        spinning: bool = True,
    ) -> OnnxRunner:
        """A session on the graph at ``path``, unchecked (the benchmark opens variants)."""
        try:
            import onnxruntime
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EmbeddingModelError(
                f"the ONNX backend needs onnxruntime and tokenizers ({exc}): "
                "pip install onnxruntime, or use the torch backend"
            ) from exc
        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        tokenizer.no_padding()  # padding is done per sorted batch, below
        tokenizer.enable_truncation(max_length=layout.max_seq_length)
        padding = _json(directory / "tokenizer.json").get("padding") or {}
        pad_id = int(padding.get("pad_id", tokenizer.token_to_id("[PAD]") or 0))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: one per physical core
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Pool threads spin between the operators of a run (ONNX Runtime's default); making
        # them sleep was no clear win (docs/decisions/0006-embedding-backend.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", str(int(spinning)))
        try:
            session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise EmbeddingModelError(f"cannot load the ONNX graph {path}: {exc}") from exc
        return cls(session, tokenizer, layout, batch_size, pad_id)

    def check(self, reference_file: Path, name: str, variant: str) -> None:
        """Refuse a graph whose probes drift from the reference's (checked at every load)."""
        import numpy as np

        reference = np.load(reference_file)
        worst = float(np.min(np.sum(self.encode(list(onnx_export.PROBES)) * reference, axis=1)))
        if worst < onnx_export.QUALITY_FLOOR:
            raise EmbeddingModelError(
                f"the {variant} ONNX graph of {name} drifts from the reference model (least "
                f"cosine {worst:.4f} < {onnx_export.QUALITY_FLOOR} on probe sentences): "
                "use the torch backend (ORB_LEARNING_EMBEDDING_BACKEND=torch)"
            )

    def encode(self, texts: list[str]) -> np.ndarray:
        """Tokenize all, sort by length, run padded batches of similar lengths, unsort.

        A run holds at most ``batch_size`` texts and ``TOKENS_PER_RUN`` padded tokens: on
        2 cores, large runs of short texts were slower than small ones, their activations
        no longer fitting in cache (docs/decisions/0006-embedding-backend.md).
        """
        import numpy as np

        if self.layout.lowercase:
            texts = [text.lower() for text in texts]
        if len(texts) == 1:
            encodings = [self.tokenizer.encode(texts[0])]
        else:
            encodings = self.tokenizer.encode_batch(texts)
        lengths = [len(e.ids) for e in encodings]
        order = sorted(range(len(texts)), key=lengths.__getitem__)
        rows = np.empty((len(texts), self.dimension), dtype=np.float32)
        start = 0
        while start < len(order):
            end = start + 1  # grow the run while it stays within both bounds
            while (
                end < len(order)
                and end - start < self.batch_size
                and (end - start + 1) * lengths[order[end]] <= TOKENS_PER_RUN
            ):
                end += 1
            chunk = order[start:end]
            rows[chunk] = self._run([encodings[i] for i in chunk], lengths[chunk[-1]])
            start = end
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        normalised: np.ndarray = rows / np.maximum(norms, 1e-12)
        return normalised

    def _run(self, encodings: list[Encoding], width: int) -> np.ndarray:
        import numpy as np

        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            size = len(encoding.ids)
            ids[row, :size] = encoding.ids
            mask[row, :size] = 1
            types[row, :size] = encoding.type_ids
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        hidden = self.session.run(None, {k: v for k, v in feed.items() if k in self.inputs})[0]
        return _pool(hidden, mask, self.layout.pooling)


def _pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """sentence-transformers' pooling over the real (unpadded) tokens."""
    import numpy as np

    if mode == "cls":
        return np.asarray(hidden[:, 0], dtype=np.float32)
    weights = mask[..., None].astype(np.float32)
    if mode == "max":
        return np.asarray(np.where(weights > 0, hidden, -1e9).max(axis=1), dtype=np.float32)
    summed = np.einsum("bsd,bs->bd", hidden, mask.astype(np.float32))
    counts = np.maximum(weights.sum(axis=1), 1e-9)
    return np.asarray(summed / counts, dtype=np.float32)
