"""The embedding backends the benchmark compares, and the sentences it feeds them.

The library's backends (``torch``, ``onnx``, ``onnx-int8``) are built as the library
builds them. The variants the library rejected are built here only, to show why:
torch's dynamic int8 quantisation and ONNX Runtime's per-tensor dynamic int8
(``quantize_dynamic``), plus thread and spinning settings of the default backend.
"""

from __future__ import annotations

import logging
import random
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from orb_learning.embeddings import (
    SentenceTransformerEmbedder,
    _model_files as model_files,
    _onnx_backend as onnx_backend,
    _onnx_export as onnx_export,
)
from orb_learning.sample import generate

REPOSITORY = Path(__file__).resolve().parent.parent
FIXED_SENTENCES = REPOSITORY / "tests" / "embedding_sentences.txt"


@dataclass
class Case:
    """One way of running the model, built lazily (loading is part of what is timed)."""

    name: str
    description: str
    build: Callable[[int], Any]  # batch size -> an Embedder
    shipped: bool  # a backend the library offers


class Runner:
    """An unchecked ONNX runner behind the Embedder protocol (for rejected variants)."""

    def __init__(self, name: str, runner: onnx_backend.OnnxRunner) -> None:
        self.name, self.runner, self.dimension = name, runner, runner.dimension

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.runner.encode(list(texts))


class TorchInt8:
    """sentence-transformers with torch's dynamic int8 quantisation of every Linear."""

    name = "torch-int8-dynamic"

    def __init__(self, batch_size: int) -> None:
        import torch

        model = SentenceTransformerEmbedder(backend="torch")._loaded()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model = torch.ao.quantization.quantize_dynamic(
                model.model,  # type: ignore[attr-defined]
                {torch.nn.Linear},
                dtype=torch.qint8,
            )
        self.batch_size, self.dimension = batch_size, 384

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        rows = self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True)
        return np.asarray(rows, dtype=np.float32)


def _directory() -> Path:
    return model_files.local_directory(model_files.model_source(None), "all-MiniLM-L6-v2")


def set_batch_size(embedder: Any, batch_size: int) -> None:
    """Change how many texts one model call takes, on a loaded embedder of any case."""
    if isinstance(embedder, SentenceTransformerEmbedder):
        embedder._loaded().batch_size = batch_size  # type: ignore[attr-defined]
    elif isinstance(embedder, Runner):
        embedder.runner.batch_size = batch_size
    else:
        embedder.batch_size = batch_size


def _onnx_variant(path: Path, batch_size: int, threads: int | None, spinning: bool) -> Any:
    directory = _directory()
    layout = onnx_backend.read_layout(directory, "all-MiniLM-L6-v2")
    runner = onnx_backend.OnnxRunner.open(
        directory, layout, path, batch_size, threads, spinning=spinning
    )
    return Runner(path.stem, runner)


def dynamic_int8_graph() -> Path:
    """ONNX Runtime's stock recipe: per-tensor dynamic int8 of every MatMul (cached)."""
    directory = _directory()
    fp32 = onnx_export.ensure_model(directory, "all-MiniLM-L6-v2", "fp32")
    target = fp32.with_name("bench-dynamic-int8.onnx")
    if not target.exists():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        logging.getLogger().setLevel(logging.ERROR)  # "consider pre-processing" warnings
        quantize_dynamic(
            str(fp32),
            str(target),
            weight_type=QuantType.QInt8,
            extra_options={"DefaultTensorType": 1},  # float, for the fused nodes' outputs
        )
    return target


def int8_graph() -> Path:
    return onnx_export.ensure_model(_directory(), "all-MiniLM-L6-v2", "int8")


def cases() -> list[Case]:
    def library(backend: str, threads: int | None = None) -> Callable[[int], Any]:
        return lambda b: SentenceTransformerEmbedder(backend=backend, batch_size=b, threads=threads)

    return [
        Case("torch", "reference: sentence-transformers, torch, float32", library("torch"), True),
        Case(
            "torch-int8-dynamic",
            "torch dynamic int8 quantisation of every Linear (no new dependency)",
            TorchInt8,
            False,
        ),
        Case("onnx", "ONNX Runtime, exported graph, float32, 2 threads", library("onnx"), True),
        Case(
            "onnx-int8-dynamic",
            "ONNX Runtime quantize_dynamic: int8 weights, per-tensor int8 activations",
            lambda b: _onnx_variant(dynamic_int8_graph(), b, None, True),
            False,
        ),
        Case(
            "onnx-int8",
            "ONNX Runtime, 8-bit weights in blocks of 32, int8 products",
            library("onnx-int8"),
            True,
        ),
        Case(
            "onnx-int8 1 thread",
            "the default backend with one intra-op thread",
            library("onnx-int8", threads=1),
            False,
        ),
        Case(
            "onnx-int8 sleeping",
            "the default backend with pool threads that sleep instead of spinning",
            lambda b: _onnx_variant(int8_graph(), b, None, False),
            False,
        ),
    ]


def fixed_sentences() -> list[str]:
    lines = FIXED_SENTENCES.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def new_sentences(count: int, *, seed: int, start: int = 0) -> list[str]:
    """``count`` distinct task descriptions none of which was embedded before.

    Realistic ones: the fixed set and the sample generator's descriptions, each with a
    distinct ticket number, so that no cache can answer and lengths vary as in life.
    """
    bases = fixed_sentences() + sorted({r.task_description for r in generate(2000, seed=seed)})
    rng = random.Random(seed)
    picks = [rng.choice(bases) for _ in range(start + count)][start:]
    return [f"{text} (ticket {start + i + 10_000})" for i, text in enumerate(picks)]


def token_lengths(texts: list[str]) -> list[int]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(_directory() / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=256)
    return [len(e.ids) for e in tokenizer.encode_batch(texts)]
