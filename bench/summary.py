"""``bench/RESULTS.md``: the headline of each part of the benchmark, on one page.

Each part writes its own report with every figure (``SEARCH.md``, ``EMBEDDINGS.md``,
``ANALYTICS.md``, ``TELEMETRY.md``, each with a JSON next to it). This page quotes the
headline section of each, as that report rendered it, so the two never disagree, and
``results.json`` lists which run of each part the page quotes.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Part:
    """One part of the benchmark: its command, report, JSON and headline section."""

    title: str
    command: str
    report: str
    data: str
    headline: str  # the heading of the section quoted, as the report writes it


PARTS = (
    Part(
        "Semantic search, ingest and storage",
        "python bench/search.py [--million]",
        "SEARCH.md",
        "search.json",
        "## Headline",
    ),
    Part(
        "Embedding backends",
        "python bench/embeddings.py",
        "EMBEDDINGS.md",
        "embeddings.json",
        "### Summary",
    ),
    Part(
        "Analytics and the view refresh job",
        "python bench/run.py [--rows 100000 --rows 1000000]",
        "ANALYTICS.md",
        "analytics.json",
        "## Headline",
    ),
    Part(
        "Telemetry capture",
        "python bench/telemetry.py",
        "TELEMETRY.md",
        "telemetry.json",
        "## Against the targets",
    ),
)


def section(markdown: str, heading: str) -> str | None:
    """The section of ``markdown`` whose heading starts with ``heading``, without the
    heading line, up to the next heading of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = markdown.splitlines()
    for start, line in enumerate(lines):
        if line.startswith(heading):
            body = []
            for following in lines[start + 1 :]:
                hashes = len(following) - len(following.lstrip("#"))
                if 0 < hashes <= level and following[hashes : hashes + 1] == " ":
                    break
                body.append(following)
            return "\n".join(body).strip()
    return None


def _run_info(path: Path) -> dict[str, Any]:
    """When and at which commit the part's JSON was produced (what the report quotes)."""
    if not path.exists():
        return {"present": False}
    data = json.loads(path.read_text())
    library = data.get("library") or {}
    machine = data.get("machine") or {}
    return {
        "present": True,
        "generated_at": data.get("generated_at"),
        "commit": library.get("commit") or machine.get("commit"),
    }


def render(bench_dir: Path = BENCH_DIR) -> tuple[str, dict[str, Any]]:
    out = [
        "# Benchmark results",
        "",
        "`python -m bench` runs the four parts below in turn (each can also run alone) and "
        "writes this page, which quotes the headline of each part's report; every figure, the "
        "machine, the versions and the parameters are in those reports. Figures from a shared "
        "2-core machine: compare figures of one run (ratios), not of different runs.",
        "",
    ]
    index: dict[str, Any] = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds")}
    for part in PARTS:
        info = _run_info(bench_dir / part.data)
        index[part.report] = {"data": part.data, **info}
        out += [f"## {part.title}", ""]
        report = bench_dir / part.report
        quoted = section(report.read_text(), part.headline) if report.exists() else None
        if quoted is None:
            out += [f"(not measured yet: `{part.command}`)", ""]
            continue
        when = f", run of {info['generated_at']}" if info.get("generated_at") else ""
        out += [f"From [{part.report}]({part.report}) (`{part.command}`{when}):", "", quoted, ""]
    return "\n".join(out), index


def write(bench_dir: Path = BENCH_DIR) -> None:
    markdown, index = render(bench_dir)
    (bench_dir / "RESULTS.md").write_text(markdown)
    (bench_dir / "results.json").write_text(json.dumps(index, indent=2) + "\n")


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else BENCH_DIR)
