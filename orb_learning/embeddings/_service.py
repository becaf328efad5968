"""The asyncio face of an embedder: off-loop encoding, coalesced queries, an LRU cache."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from orb_learning.errors import EmbeddingModelError, NotInitializedError

from ._model_files import DEFAULT_MODEL
from .model import SCHEMA_DIMENSION, Embedder

if TYPE_CHECKING:
    import numpy as np

_T = TypeVar("_T")


class CacheInfo(NamedTuple):
    """Counters of the query cache; coalesced duplicates count as misses."""

    hits: int
    misses: int
    size: int
    maxsize: int


def _load_and_measure(embedder: Embedder) -> int:
    """Runs in the executor: load if the embedder knows how, then read its dimension."""
    load: Callable[[], object] | None = getattr(embedder, "load", None)
    try:
        if callable(load):
            load()
        return int(embedder.dimension)
    except EmbeddingModelError:
        raise
    except Exception as exc:
        raise EmbeddingModelError(f"cannot load embedding model {embedder.name}: {exc}") from exc


class AsyncEmbeddingService:
    """The asyncio face of an :class:`Embedder`, used by the database layer.

    The model runs in an executor (by default one owned thread: the loop never blocks
    and torch is never entered from two threads). Concurrent ``embed_query`` calls are
    coalesced: while a model call runs, new texts queue up and the next call encodes
    them together; identical texts are encoded once; results are LRU-cached.
    """

    def __init__(
        self,
        embedder: Embedder,
        *,
        expected_dimension: int | None = SCHEMA_DIMENSION,
        cache_size: int = 1024,
        max_batch: int = 64,
        executor: concurrent.futures.Executor | None = None,
    ) -> None:
        if cache_size < 0 or max_batch < 1:
            raise ValueError("cache_size must be >= 0 and max_batch >= 1")
        self.embedder = embedder
        self._expected = expected_dimension
        self._cache_size = cache_size
        self._max_batch = max_batch
        self._owns_executor = executor is None
        self._executor = executor or concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="orb-embeddings"
        )
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._hits = self._misses = 0
        self._pending: dict[str, asyncio.Future[np.ndarray]] = {}  # for the next model call
        self._inflight: dict[str, asyncio.Future[np.ndarray]] = {}  # in the running call
        self._drainer: asyncio.Task[None] | None = None
        self._dimension: int | None = None
        self._start_lock = asyncio.Lock()
        self._closed = False

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            raise NotInitializedError("the embedding service is not started")
        return self._dimension

    async def start(self) -> None:
        """Load the model off the loop and check that its vectors fit the column."""
        self._check_open()
        async with self._start_lock:
            if self._dimension is not None:
                return
            dimension = await self._run(_load_and_measure, self.embedder)
            if self._expected is not None and dimension != self._expected:
                raise EmbeddingModelError(
                    f"model {self.embedder.name} produces {dimension}-dimensional embeddings "
                    f"but the executions.embedding column is vector({self._expected}); "
                    f"use a {self._expected}-dimensional model such as {DEFAULT_MODEL}"
                )
            self._dimension = dimension

    async def embed_query(self, text: str) -> np.ndarray:
        """One text -> 1-D float32 vector: cached, and batched with concurrent callers."""
        if not isinstance(text, str):
            raise TypeError("embed_query() takes a str")
        if self._dimension is None:
            await self.start()
        self._check_open()
        cached = self._cache.get(text)
        if cached is not None:
            self._cache.move_to_end(text)
            self._hits += 1
            return cached.copy()
        self._misses += 1
        future = self._inflight.get(text) or self._pending.get(text)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._pending[text] = future
            if self._drainer is None or self._drainer.done():
                self._drainer = asyncio.get_running_loop().create_task(self._drain())
        row = await asyncio.shield(future)  # a cancelled caller must not fail the others
        return row.copy()

    async def embed_many(self, texts: Sequence[str]) -> np.ndarray:
        """Many texts -> (n, dim) float32 in order, in chunks of max_batch; not cached.

        Chunks are cut from the texts sorted by length, so that each model call pads its
        texts to similar lengths (padding is computed, then thrown away); rows come back
        in the caller's order.
        """
        import numpy as np

        if isinstance(texts, str):
            raise TypeError("embed_many() takes a sequence of texts, not a str")
        if self._dimension is None:
            await self.start()
        items = list(texts)
        order = sorted(range(len(items)), key=lambda i: len(items[i]))
        rows = np.zeros((len(items), self.dimension), dtype=np.float32)
        for start in range(0, len(items), self._max_batch):
            chunk = order[start : start + self._max_batch]
            texts_of_chunk = [items[i] for i in chunk]
            encoded = await self._run(self.embedder.encode, texts_of_chunk)
            rows[chunk] = self._checked(encoded, len(chunk))
        return rows

    def cache_info(self) -> CacheInfo:
        return CacheInfo(self._hits, self._misses, len(self._cache), self._cache_size)

    async def close(self) -> None:
        """Fail every waiter, stop the drain task and shut down an owned executor."""
        if self._closed:
            return
        self._closed = True
        self._fail([*self._pending.values(), *self._inflight.values()])
        self._pending.clear()
        if self._drainer is not None and not self._drainer.done():
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer
        if self._owns_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def _drain(self) -> None:
        """Encode queued texts, one model call per batch, until the queue is empty."""
        while self._pending and not self._closed:
            texts = list(self._pending)[: self._max_batch]
            batch = {text: self._pending.pop(text) for text in texts}
            self._inflight.update(batch)
            try:
                rows = self._checked(await self._run(self.embedder.encode, texts), len(texts))
            except asyncio.CancelledError:
                self._fail(batch.values())
                raise
            except Exception as exc:
                for future in batch.values():
                    if not future.done():
                        future.set_exception(exc)
            else:
                for view, (text, future) in zip(rows, batch.items(), strict=True):
                    row = view.copy()  # a view would pin the whole batch in the cache
                    row.flags.writeable = False  # shared by the cache and coalesced callers
                    self._remember(text, row)
                    if not future.done():
                        future.set_result(row)
            finally:
                for text in texts:
                    self._inflight.pop(text, None)

    def _remember(self, text: str, row: np.ndarray) -> None:
        if self._cache_size == 0:
            return
        self._cache[text] = row
        self._cache.move_to_end(text)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _checked(self, rows: Any, count: int) -> np.ndarray:
        """Reject output of the wrong shape before it can reach the vector column."""
        import numpy as np

        array = np.asarray(rows, dtype=np.float32)
        if array.shape != (count, self.dimension):
            raise EmbeddingModelError(
                f"model {self.embedder.name} returned shape {array.shape} for {count} texts, "
                f"expected ({count}, {self.dimension})"
            )
        return array

    async def _run(self, function: Callable[..., _T], *args: Any) -> _T:
        self._check_open()
        try:
            future = asyncio.get_running_loop().run_in_executor(self._executor, function, *args)
        except RuntimeError as exc:  # the executor was shut down
            raise NotInitializedError("the embedding service is closed") from exc
        return await future

    @staticmethod
    def _fail(futures: Iterable[asyncio.Future[np.ndarray]]) -> None:
        for future in futures:
            if not future.done():
                future.set_exception(NotInitializedError("the embedding service was closed"))
                future.exception()  # mark it retrieved: its callers may all be gone

    def _check_open(self) -> None:
        if self._closed:
            raise NotInitializedError("the embedding service is closed")
