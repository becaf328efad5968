"""Benchmark of the embedding backends: latency of a query's embedding, throughput, quality.

    python bench/embeddings.py [--calls 200] [--sentences 512] [--reps 2] [--out bench/]

Every backend in the same run, on the same sentences (see ``embedding_cases.py``):
single-sentence latency of new sentences and of a repeated one through the library's
``AsyncEmbeddingService`` (what a search sees), throughput of ``encode`` at batch 1, 16,
64 and 256 and of ``embed_many`` (the store's batch path), and the cosine of each
backend's embeddings to the reference's (sentence-transformers, torch, float32) on the
fixed sentences of tests/embedding_sentences.txt. No database is needed. Progress goes
to stderr, the tables to stdout, ``EMBEDDINGS.md`` and ``embeddings.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench import embedding_cases, embeddings_report, machine, timing
from bench.timing import log
from orb_learning.embeddings import AsyncEmbeddingService

BATCHES = (1, 16, 64, 256)
REPEATED = "Optimize slow queries in the database layer"


def load(selected: list[embedding_cases.Case]) -> tuple[dict[str, Any], dict[str, float]]:
    """Build every case (graphs are exported first, so load time excludes the export)."""
    embedding_cases.int8_graph()
    embedding_cases.dynamic_int8_graph()
    embedders, seconds = {}, {}
    for case in selected:
        started = time.perf_counter()
        embedder = case.build(64)
        getattr(embedder, "load", lambda: None)()
        embedder.encode(["warm up"])
        seconds[case.name] = time.perf_counter() - started
        embedders[case.name] = embedder
        log(f"loaded {case.name} in {seconds[case.name]:.2f} s")
    return embedders, seconds


def quality(embedders: dict[str, Any], sentences: list[str]) -> dict[str, dict[str, Any]]:
    """Cosine to the reference per sentence, batched (one call) and alone (one per call)."""
    reference = embedders["torch"].encode(sentences)
    figures = {}
    for name, embedder in embedders.items():
        batched = np.sum(embedder.encode(sentences) * reference, axis=1)
        alone = np.concatenate([embedder.encode([s]) for s in sentences])
        single = np.sum(alone * reference, axis=1)
        worst = int(np.argmin(np.minimum(batched, single)))
        figures[name] = {
            "sentences": len(sentences),
            "batched_min": float(batched.min()),
            "batched_mean": float(batched.mean()),
            "single_min": float(single.min()),
            "single_mean": float(single.mean()),
            "below_0_99": int(np.sum(np.minimum(batched, single) < 0.99)),
            "worst_sentence": sentences[worst],
        }
        log(f"quality {name}: min {min(batched.min(), single.min()):.4f}")
    return figures


async def latency(embedders: dict[str, Any], calls: int, seed: int) -> dict[str, Any]:
    """embed_query through the service: new sentences (misses), then one repeated (hits)."""
    services = {name: AsyncEmbeddingService(e) for name, e in embedders.items()}
    fresh = embedding_cases.new_sentences(calls + 20, seed=seed)
    try:
        for service in services.values():
            await service.start()

        def next_new(service: AsyncEmbeddingService) -> Any:
            texts = iter(fresh)
            return lambda: service.embed_query(next(texts))

        new = await timing.round_robin(
            {name: next_new(s) for name, s in services.items()},
            calls=calls,
            warmup=10,
            budget_seconds=120,
            min_calls=calls,
        )
        log(f"new sentences: load {new.loadavg_before:.2f} -> {new.loadavg_after:.2f}")
        repeated = await timing.round_robin(
            {name: (lambda s=s: s.embed_query(REPEATED)) for name, s in services.items()},
            calls=calls,
            warmup=10,
            min_calls=calls,
        )
        hits = {name: s.cache_info()._asdict() for name, s in services.items()}
    finally:
        for service in services.values():
            await service.close()
    return {
        "new": {k: v.as_dict() for k, v in new.latencies.items()},
        "repeated": {k: v.as_dict() for k, v in repeated.latencies.items()},
        "cache": hits,
        "distinct_new_sentences": len(set(fresh)),
        "loadavg": {
            "new": [new.loadavg_before, new.loadavg_after],
            "repeated": [repeated.loadavg_before, repeated.loadavg_after],
        },
    }


def throughput(
    embedders: dict[str, Any], count: int, reps: int, seed: int
) -> dict[str, dict[str, Any]]:
    """Sentences/s of encode() in calls of ``batch`` texts, cases interleaved per rep."""
    figures: dict[str, dict[str, Any]] = {name: {} for name in embedders}
    for batch in BATCHES:
        size = count if batch > 1 else max(count // 2, 64)
        texts = embedding_cases.new_sentences(size, seed=seed + batch, start=1_000_000)
        rates: dict[str, list[float]] = {name: [] for name in embedders}
        load_before = os.getloadavg()[0]
        for _ in range(reps):
            for name, embedder in embedders.items():
                embedding_cases.set_batch_size(embedder, batch)
                started = time.perf_counter()
                for start in range(0, size, batch):
                    embedder.encode(texts[start : start + batch])
                rates[name].append(size / (time.perf_counter() - started))
        for name, values in rates.items():
            embedding_cases.set_batch_size(embedders[name], 64)
            figures[name][str(batch)] = {
                "best": max(values),
                "median": statistics.median(values),
                "runs": values,
            }
        log(f"throughput batch {batch}: load {load_before:.2f} -> {os.getloadavg()[0]:.2f}")
    return figures


async def store_path(
    embedders: dict[str, Any], count: int, reps: int, seed: int
) -> dict[str, dict[str, Any]]:
    """embed_many of ``count`` texts (max_batch 64, sorted by length): the store's path."""
    texts = embedding_cases.new_sentences(count, seed=seed, start=2_000_000)
    rates: dict[str, list[float]] = {name: [] for name in embedders}
    for _ in range(reps):
        for name, embedder in embedders.items():
            service = AsyncEmbeddingService(embedder)
            try:
                await service.start()
                started = time.perf_counter()
                await service.embed_many(texts)
                rates[name].append(count / (time.perf_counter() - started))
            finally:
                await service.close()
    return {
        n: {"best": max(v), "median": statistics.median(v), "runs": v} for n, v in rates.items()
    }


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="timed calls per latency case")
    parser.add_argument("--sentences", type=int, default=512, help="texts per throughput run")
    parser.add_argument("--reps", type=int, default=2, help="throughput runs per case")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only", action="append", help="case names (default: all)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    selected = [c for c in embedding_cases.cases() if not args.only or c.name in args.only]
    if "torch" not in {c.name for c in selected}:
        parser.error("the torch case is the reference: keep it in --only")
    began = time.perf_counter()
    load_start = os.getloadavg()
    embedders, load_seconds = load(selected)
    fixed = embedding_cases.fixed_sentences()
    results: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine.machine(),
        "library": machine.library(),
        "versions": embeddings_report.versions(),
        "parameters": {
            "calls": args.calls,
            "sentences": args.sentences,
            "reps": args.reps,
            "seed": args.seed,
            "batches": list(BATCHES),
            "fixed_sentences": len(fixed),
            "new_sentence_tokens": embeddings_report.token_summary(
                embedding_cases.token_lengths(embedding_cases.new_sentences(500, seed=args.seed))
            ),
            "fixed_sentence_tokens": embeddings_report.token_summary(
                embedding_cases.token_lengths(fixed)
            ),
        },
        "cases": {c.name: {"description": c.description, "shipped": c.shipped} for c in selected},
        "load_seconds": load_seconds,
    }
    results["quality"] = quality(embedders, fixed)
    log("latency of embed_query")
    results["latency"] = await latency(embedders, args.calls, args.seed)
    log("throughput of encode")
    results["throughput"] = throughput(embedders, args.sentences, args.reps, args.seed)
    log("embed_many")
    results["embed_many"] = await store_path(embedders, args.sentences, args.reps, args.seed)
    results["loadavg"] = {"start": list(load_start), "end": list(os.getloadavg())}
    results["seconds"] = time.perf_counter() - began
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "embeddings.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "EMBEDDINGS.md").write_text(embeddings_report.markdown(results))
    print(embeddings_report.text(results))
    log(f"done in {results['seconds']:.0f} s; wrote {args.out / 'EMBEDDINGS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
