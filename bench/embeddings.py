"""The embedding backends the library offers (``orb_learning.embeddings.BACKENDS``), in the
same run: how close each is to the reference, and how fast.

* **Agreement**: the cosine of each backend's embedding to the reference's (``torch``,
  float32) for every one of the fixed sentences of ``tests/embedding_sentences.txt``,
  batched and one at a time; a backend is offered only if the least is at least 0.99.
* **Per query**: ``embed_query`` of new sentences (never cached) through
  ``AsyncEmbeddingService``, as a search sees it, in rounds across backends with the
  machine reference.
* **Sentences/s**: ``embed_many`` (the store's path: chunks of 64 cut from the texts sorted
  by length), best of ``reps`` runs, backends interleaved, the reference timed between.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from orb_learning import AsyncEmbeddingService, SentenceTransformerEmbedder, sample
from orb_learning.embeddings import BACKENDS, DEFAULT_BACKEND

from .results import REPOSITORY
from .timing import Reference, latency, log, rounds

REFERENCE_BACKEND = "torch"
QUALITY_BAR = 0.99


@dataclass(frozen=True)
class Parameters:
    calls: int = 200
    sentences: int = 512
    reps: int = 2
    fixed: int | None = None
    """Fixed sentences compared (None: all of them)."""
    seed: int = 7


QUICK = Parameters(calls=20, sentences=64, reps=1, fixed=24)


def fixed_sentences() -> list[str]:
    lines = (REPOSITORY / "tests" / "embedding_sentences.txt").read_text("utf-8").splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def new_sentences(count: int, *, seed: int, start: int = 0) -> list[str]:
    """``count`` distinct task descriptions none of which was embedded before: the fixed
    set's and the sample generator's, each with its own ticket number (lengths vary as in
    life, and no cache can answer)."""
    bases = fixed_sentences() + sorted({r.task_description for r in sample.generate(2000)})
    rng = random.Random(seed)
    picks = [rng.choice(bases) for _ in range(start + count)][start:]
    return [f"{text} (ticket {start + i + 10_000})" for i, text in enumerate(picks)]


def agreement(embedders: dict[str, Any], sentences: list[str]) -> dict[str, dict[str, Any]]:
    """Least and mean cosine to the reference, batched (one call) and alone."""
    reference = embedders[REFERENCE_BACKEND].encode(sentences)
    out = {}
    for name, embedder in embedders.items():
        batched = np.sum(embedder.encode(sentences) * reference, axis=1)
        alone = np.sum(np.concatenate([embedder.encode([s]) for s in sentences]) * reference, 1)
        least = np.minimum(batched, alone)
        out[name] = {
            "sentences": len(sentences),
            "min_cosine": round(float(least.min()), 5),
            "mean_cosine": round(float(least.mean()), 5),
            "below_bar": int(np.sum(least < QUALITY_BAR)),
            "worst_sentence": sentences[int(np.argmin(least))],
        }
    return out


async def per_query(
    embedders: dict[str, Any], reference: Reference, p: Parameters
) -> dict[str, Any]:
    services = {name: AsyncEmbeddingService(e) for name, e in embedders.items()}
    texts = iter(new_sentences(len(services) * (p.calls + 20), seed=p.seed))
    try:
        for service in services.values():
            await service.start()
        cases = {name: (lambda s=s: s.embed_query(next(texts))) for name, s in services.items()}
        return await rounds(cases, reference, calls=p.calls, budget=120, min_calls=p.calls)
    finally:
        for service in services.values():
            await service.close()


async def throughput(
    embedders: dict[str, Any], reference: Reference, p: Parameters
) -> dict[str, Any]:
    texts = new_sentences(p.sentences, seed=p.seed, start=1_000_000)
    rates: dict[str, list[float]] = {name: [] for name in embedders}
    references = []
    for _ in range(p.reps):
        for name, embedder in embedders.items():
            service = AsyncEmbeddingService(embedder)
            await service.start()
            started = time.perf_counter()
            await service.embed_many(texts)
            rates[name].append(p.sentences / (time.perf_counter() - started))
            await service.close()
            references.append((await reference.burst(10))["p50"])
    return {
        "sentences": p.sentences,
        "sentences_per_second": {n: round(max(v), 1) for n, v in rates.items()},
        "runs": {n: [round(r, 1) for r in v] for n, v in rates.items()},
        "reference": latency(references),
    }


async def measure(reference: Reference, p: Parameters) -> dict[str, Any]:
    embedders, load_seconds = {}, {}
    for name in BACKENDS:  # the load includes the ONNX export if the cache has none
        started = time.perf_counter()
        embedder = SentenceTransformerEmbedder(backend=name)
        embedder.load()
        embedder.encode(["warm up"])
        load_seconds[name] = round(time.perf_counter() - started, 2)
        embedders[name] = embedder
        log(f"embeddings: {name} loaded in {load_seconds[name]:.2f} s")
    fixed = fixed_sentences()[: p.fixed]
    log(f"embeddings: agreement with {REFERENCE_BACKEND} on {len(fixed)} fixed sentences")
    quality = agreement(embedders, fixed)
    log("embeddings: embed_query of new sentences, then embed_many")
    return {
        "default": DEFAULT_BACKEND,
        "reference_backend": REFERENCE_BACKEND,
        "backends": dict(BACKENDS),
        "load_seconds": load_seconds,
        "agreement": quality,
        "per_query": await per_query(embedders, reference, p),
        "throughput": await throughput(embedders, reference, p),
    }
