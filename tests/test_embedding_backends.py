"""The embedding backends against the reference model, on a fixed set of task descriptions.

The reference is sentence-transformers on torch in float32. A backend is kept only if
every sentence of tests/embedding_sentences.txt gets an embedding within 0.99 cosine of
the reference's, whether encoded alone or in a batch.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from orb_learning.config import Settings
from orb_learning.embeddings import (
    BACKEND_ENV_VAR,
    BACKENDS,
    DEFAULT_BACKEND,
    SentenceTransformerEmbedder,
    _onnx_backend as onnx_backend,
    _onnx_export as onnx_export,
    resolve_backend,
)
from orb_learning.errors import ConfigurationError, EmbeddingModelError
from tests.conftest import block_network

REPO_ROOT = Path(__file__).resolve().parents[1]
SENTENCES_FILE = REPO_ROOT / "tests" / "embedding_sentences.txt"
QUALITY_FLOOR = 0.99
ONNX_BACKENDS = [name for name in BACKENDS if name != "torch"]


def fixed_sentences() -> list[str]:
    lines = SENTENCES_FILE.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    return fixed_sentences()


@pytest.fixture(scope="module")
def reference(sentences: list[str]) -> np.ndarray:
    return SentenceTransformerEmbedder(backend="torch").encode(sentences)


@pytest.fixture(scope="module", params=ONNX_BACKENDS)
def backend(request: pytest.FixtureRequest) -> SentenceTransformerEmbedder:
    embedder = SentenceTransformerEmbedder(backend=request.param)
    embedder.load()
    return embedder


# --- quality: the reason a backend may exist ------------------------------------------


def test_the_fixed_set_is_varied(sentences: list[str]) -> None:
    assert len(sentences) >= 200
    assert len(set(sentences)) == len(sentences)
    lengths = sorted(len(s.split()) for s in sentences)
    assert lengths[0] == 1 and lengths[-1] >= 40  # one word up to a paragraph
    assert any(not s.isascii() for s in sentences)


def test_batched_embeddings_stay_within_0_99_of_the_reference(
    backend: SentenceTransformerEmbedder, sentences: list[str], reference: np.ndarray
) -> None:
    rows = backend.encode(sentences)
    assert rows.shape == reference.shape and rows.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    cosines = np.sum(rows * reference, axis=1)
    worst = int(np.argmin(cosines))
    assert cosines[worst] >= QUALITY_FLOOR, (backend.backend, sentences[worst], cosines[worst])


def test_single_sentence_embeddings_stay_within_0_99_of_the_reference(
    backend: SentenceTransformerEmbedder, sentences: list[str], reference: np.ndarray
) -> None:
    rows = np.concatenate([backend.encode([sentence]) for sentence in sentences])
    cosines = np.sum(rows * reference, axis=1)
    worst = int(np.argmin(cosines))
    assert cosines[worst] >= QUALITY_FLOOR, (backend.backend, sentences[worst], cosines[worst])


def test_long_texts_are_truncated_as_the_reference_does(
    backend: SentenceTransformerEmbedder,
) -> None:
    words = [
        "Refactor",
        "the",
        "payment",
        "service",
        "so",
        "that",
        "retries",
        "are",
        "idempotent",
        "and",
        "logged",
    ]
    long_text = " ".join(words[i % len(words)] + str(i) for i in range(600))  # > 256 tokens
    tail_changed = long_text + " and then something else entirely about CSS"
    torch = SentenceTransformerEmbedder(backend="torch")
    expected = torch.encode([long_text, tail_changed])
    rows = backend.encode([long_text, tail_changed, "short one"])
    assert float(rows[0] @ expected[0]) >= QUALITY_FLOOR
    assert float(rows[0] @ rows[1]) == pytest.approx(1.0, abs=1e-5)  # the tail was cut


def test_semantics_hold_on_every_backend(backend: SentenceTransformerEmbedder) -> None:
    slow, database, css = backend.encode(
        ["Optimize slow queries", "Optimize database queries", "Fix the CSS layout of the navbar"]
    )
    assert float(slow @ database) >= 0.8
    assert float(slow @ database) > float(slow @ css)


# --- choosing a backend ---------------------------------------------------------------


def test_backend_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BACKEND_ENV_VAR, raising=False)
    assert resolve_backend(None) == DEFAULT_BACKEND == "onnx-int8"
    assert SentenceTransformerEmbedder().backend == DEFAULT_BACKEND
    assert Settings.resolve().embedding_backend == DEFAULT_BACKEND
    monkeypatch.setenv(BACKEND_ENV_VAR, "torch")
    assert resolve_backend(None) == "torch"
    assert SentenceTransformerEmbedder().backend == "torch"
    assert Settings.resolve().embedding_backend == "torch"
    assert resolve_backend("onnx") == "onnx"
    assert Settings.resolve(embedding_backend="onnx").embedding_backend == "onnx"


def test_unknown_backend_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="torch, onnx, onnx-int8"):
        SentenceTransformerEmbedder(backend="tensorrt")
    with pytest.raises(ConfigurationError, match="unknown embedding backend"):
        Settings(embedding_backend="fp16")
    monkeypatch.setenv(BACKEND_ENV_VAR, "nope")
    with pytest.raises(ConfigurationError):
        Settings.resolve()


def test_onnx_backends_refuse_a_gpu_device() -> None:
    with pytest.raises(EmbeddingModelError, match="torch"):
        SentenceTransformerEmbedder(backend="onnx", device="cuda").load()


def test_unsupported_layouts_point_to_torch(tmp_path: Path) -> None:
    (tmp_path / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                {"idx": 2, "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
            ]
        )
    )
    with pytest.raises(EmbeddingModelError, match="ORB_LEARNING_EMBEDDING_BACKEND=torch"):
        onnx_backend.read_layout(tmp_path, "dense-model")
    (tmp_path / "modules.json").write_text(json.dumps([]))
    (tmp_path / "sentence_bert_config.json").write_text('{"max_seq_length": 128}')
    assert onnx_backend.read_layout(tmp_path, "bare") == onnx_backend.Layout(128, False, "mean")


# --- the export cache -----------------------------------------------------------------


class FreshCache:
    """An empty cache directory, filled by two threads racing for the int8 graph."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.errors: list[BaseException] = []
        self.connections: list[Any] = []
        self.embedders = [SentenceTransformerEmbedder(backend="onnx-int8") for _ in range(2)]
        self.progress: list[str] = []  # what the export said (the CLI shows it on stderr)

    def fill(self) -> None:
        def load(embedder: SentenceTransformerEmbedder) -> None:
            try:
                embedder.load()
            except BaseException as exc:  # reported by the test
                self.errors.append(exc)

        handler = logging.Handler(logging.INFO)
        handler.emit = lambda record: self.progress.append(record.getMessage())  # type: ignore[method-assign]
        onnx_export.logger.addHandler(handler)
        level = onnx_export.logger.level
        onnx_export.logger.setLevel(logging.INFO)
        try:
            with pytest.MonkeyPatch.context() as patch:
                block_network(patch, self.connections)
                threads = [threading.Thread(target=load, args=(e,)) for e in self.embedders]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(300)
        finally:
            onnx_export.logger.removeHandler(handler)
            onnx_export.logger.setLevel(level)

    @property
    def model_dir(self) -> Path:
        [directory] = self.root.iterdir()
        return directory


@pytest.fixture(scope="module")
def fresh_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FreshCache]:
    cache = FreshCache(tmp_path_factory.mktemp("onnx-cache"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(onnx_export.CACHE_ENV_VAR, str(cache.root))
        cache.fill()
        yield cache


def test_export_is_offline_done_once_and_reused(
    fresh_cache: FreshCache, sentences: list[str], reference: np.ndarray
) -> None:
    assert fresh_cache.errors == []
    assert fresh_cache.connections == []
    said = fresh_cache.progress  # one export, announced before and after (two threads raced)
    assert len(said) == 2, said
    assert said[0].startswith("Exporting the embedding model to ONNX int8, once (about 10-15 s")
    assert said[1].startswith("Exported the embedding model in ")
    names = sorted(p.name for p in fresh_cache.model_dir.iterdir())
    assert names == [".lock", "fp32.onnx", "int8.onnx", "reference.npy"]  # no leftovers
    stamps = {p.name: p.stat().st_mtime_ns for p in fresh_cache.model_dir.iterdir()}
    rows = fresh_cache.embedders[1].encode(sentences[:20])
    assert np.min(np.sum(rows * reference[:20], axis=1)) >= QUALITY_FLOOR
    SentenceTransformerEmbedder(backend="onnx").load()  # reuses fp32.onnx
    assert {p.name: p.stat().st_mtime_ns for p in fresh_cache.model_dir.iterdir()} == stamps


def test_a_cached_graph_loads_without_torch(fresh_cache: FreshCache) -> None:
    code = (
        "import sys\n"
        "from orb_learning.embeddings import SentenceTransformerEmbedder\n"
        "rows = SentenceTransformerEmbedder(backend='onnx-int8').encode(['Fix the login bug'])\n"
        "assert rows.shape == (1, 384), rows.shape\n"
        "heavy = {'torch', 'sentence_transformers', 'transformers'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, onnx_export.CACHE_ENV_VAR: str(fresh_cache.root)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_graph_that_drifts_from_the_reference_is_refused(fresh_cache: FreshCache) -> None:
    reference_file = fresh_cache.model_dir / "reference.npy"
    kept = reference_file.read_bytes()
    probes = np.load(reference_file)
    try:
        np.save(reference_file, np.roll(probes, 1, axis=0))  # each probe gets another's vector
        with pytest.raises(EmbeddingModelError, match="drifts from the reference"):
            SentenceTransformerEmbedder(backend="onnx-int8").load()
    finally:
        reference_file.write_bytes(kept)
    SentenceTransformerEmbedder(backend="onnx-int8").load()


def test_an_unwritable_cache_says_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv(onnx_export.CACHE_ENV_VAR, str(blocker / "cache"))
    with pytest.raises(EmbeddingModelError, match=onnx_export.CACHE_ENV_VAR):
        SentenceTransformerEmbedder(backend="onnx").load()


def test_importing_the_package_loads_no_backend() -> None:
    code = (
        "import sys\n"
        "import orb_learning, orb_learning.embeddings, orb_learning.config\n"
        "heavy = {'torch', 'onnxruntime', 'onnx', 'tokenizers', 'numpy'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True)
    assert result.returncode == 0, result.stderr[-2000:]
