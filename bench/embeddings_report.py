"""Tables of the embedding benchmark: text for stdout, Markdown for EMBEDDINGS.md."""

from __future__ import annotations

import importlib.metadata
import statistics
from typing import Any

from bench.tables import Table, ms

BATCH_KEYS = ("1", "16", "64", "256")
FLOOR = 0.99


def versions() -> dict[str, str]:
    found = {}
    for name in ("torch", "sentence-transformers", "onnxruntime", "onnx", "onnx-ir", "numpy"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def token_summary(lengths: list[int]) -> dict[str, float]:
    ordered = sorted(lengths)
    return {
        "mean": round(statistics.fmean(ordered), 1),
        "median": statistics.median(ordered),
        "max": ordered[-1],
    }


def _rate(value: float) -> str:
    return f"{value:.0f}"


def _quality_min(q: dict[str, Any]) -> float:
    return float(min(q["batched_min"], q["single_min"]))


def tables(r: dict[str, Any]) -> list[Table]:
    names = list(r["cases"])
    lat, thr, many, qual = r["latency"], r["throughput"], r["embed_many"], r["quality"]
    ref_p50 = lat["new"]["torch"]["p50"]
    ref_b64 = thr["torch"]["64"]["best"]
    summary = Table(
        ["backend", "kept", "min cos", "new p50 ms", "vs torch", "repeated p50 ms",
         "best sent/s", "at batch", "embed_many sent/s", "vs torch (b64)"],
        title="Summary",
        note="kept: offered by the library (min cos >= 0.99 on every fixed sentence, alone "
        "and batched) or the default's settings; vs torch: speed-up over the reference.",
    )  # fmt: skip
    for name in names:
        best_batch = max(BATCH_KEYS, key=lambda b, n=name: thr[n][b]["best"])
        kept = "yes" if r["cases"][name]["shipped"] else "no"
        if _quality_min(qual[name]) < FLOOR:
            kept = "no (quality)"
        summary.add(
            name,
            kept,
            f"{_quality_min(qual[name]):.4f}",
            ms(lat["new"][name]["p50"]),
            f"{ref_p50 / lat['new'][name]['p50']:.1f}x",
            ms(lat["repeated"][name]["p50"]),
            _rate(thr[name][best_batch]["best"]),
            best_batch,
            _rate(many[name]["best"]),
            f"{thr[name]['64']['best'] / ref_b64:.1f}x",
        )
    latency = Table(
        ["backend", "new p50", "new p95", "new mean", "repeated p50", "repeated p95", "hits"],
        title=f"embed_query latency, ms ({lat['distinct_new_sentences']} distinct new "
        "sentences, then one repeated sentence; through AsyncEmbeddingService)",
    )
    for name in names:
        new, rep = lat["new"][name], lat["repeated"][name]
        latency.add(
            name,
            ms(new["p50"]),
            ms(new["p95"]),
            ms(new["mean"]),
            f"{rep['p50']:.3f}",
            f"{rep['p95']:.3f}",
            lat["cache"][name]["hits"],
        )
    throughput = Table(
        ["backend", *(f"batch {b}" for b in BATCH_KEYS), "embed_many", "b64 vs torch"],
        title="Throughput, sentences/s (best of the runs; encode() called with `batch` "
        "texts; embed_many: the store's path, chunks of 64 cut from the texts sorted by length)",
    )
    for name in names:
        throughput.add(
            name,
            *(_rate(thr[name][b]["best"]) for b in BATCH_KEYS),
            _rate(many[name]["best"]),
            f"{thr[name]['64']['best'] / ref_b64:.1f}x",
        )
    quality = Table(
        ["backend", "batched min", "batched mean", "alone min", "alone mean", "< 0.99",
         "worst sentence"],
        title=f"Cosine to the reference (torch, float32) on the {qual['torch']['sentences']} "
        "fixed sentences of tests/embedding_sentences.txt",
    )  # fmt: skip
    for name in names:
        q = qual[name]
        quality.add(
            name,
            f"{q['batched_min']:.4f}",
            f"{q['batched_mean']:.5f}",
            f"{q['single_min']:.4f}",
            f"{q['single_mean']:.5f}",
            q["below_0_99"],
            q["worst_sentence"][:60],
        )
    cases = Table(["backend", "what it is", "load s"], title="Cases")
    for name in names:
        cases.add(name, r["cases"][name]["description"], f"{r['load_seconds'][name]:.2f}")
    return [summary, latency, throughput, quality, cases]


def _context(r: dict[str, Any]) -> list[str]:
    m, p, v = r["machine"], r["parameters"], r["versions"]
    load = r["latency"]["loadavg"]
    return [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']}; {m['python']}; {m['uname']}",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"Library: {r['library']['version']} at commit {r['library']['commit']}"
        + (" (with uncommitted changes)" if r["library"]["uncommitted_library_changes"] else ""),
        f"Parameters: {p['calls']} timed calls per latency case after 10 warm-up calls, "
        f"{p['sentences']} texts per throughput run (half at batch 1), best of {p['reps']} "
        f"runs; new sentences {p['new_sentence_tokens']['mean']} tokens on average "
        f"(max {p['new_sentence_tokens']['max']}), fixed set "
        f"{p['fixed_sentence_tokens']['mean']} (max {p['fixed_sentence_tokens']['max']}).",
        f"Load average (1 min): {r['loadavg']['start'][0]:.2f} at start, "
        f"{load['new'][0]:.2f} -> {load['new'][1]:.2f} during the new-sentence latencies, "
        f"{r['loadavg']['end'][0]:.2f} at the end; the run took {r['seconds']:.0f} s.",
    ]


def text(r: dict[str, Any]) -> str:
    return "\n\n".join([*(t.text() for t in tables(r)), "\n".join(_context(r))])


def markdown(r: dict[str, Any]) -> str:
    parts = [
        "# Embedding backends: latency, throughput, quality",
        "",
        "Generated by `python bench/embeddings.py` (see bench/README.md) on "
        f"{r['generated_at']}. Figures from one run on a shared machine: compare backends "
        "within the run (they are interleaved), not across runs.",
        "",
        *(f"- {line}" for line in _context(r)),
        "",
    ]
    for table in tables(r):
        parts += [table.markdown(), ""]
    return "\n".join(parts)
