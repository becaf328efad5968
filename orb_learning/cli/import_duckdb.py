"""``orb-learning import-duckdb``: move a first-version DuckDB learning database into
PostgreSQL, with a progress bar on a terminal and a summary of what was imported, updated
and skipped (and why)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .tables import render

SHOWN_SKIPPED = 20
"""Skipped rows listed one by one in the text summary (all of them with --json)."""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "import-duckdb",
        help="import the executions of a first-version DuckDB learning database",
        description="Reads the executions table of a DuckDB file written by the first version "
        "(opened read-only), validates every row and upserts it by task_id: running it twice "
        "imports nothing twice. Invalid rows are skipped and reported. Embeddings are "
        "recomputed from the task descriptions, since the first version's vectors come from "
        "other models (768-dimension) or were synthetic hashes.",
    )
    parser.add_argument("path", help="the DuckDB file (e.g. data/learning.db)")
    parser.add_argument(
        "--batch-size", type=_positive, default=1000, metavar="N", help="rows per batch"
    )
    parser.add_argument(
        "--keep-embeddings",
        action="store_true",
        help="keep stored 384-dimension embeddings (only for a file known to hold "
        "all-MiniLM-L6-v2 embeddings of the task description)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON only")
    parser.set_defaults(handler=run)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a positive integer: {text!r}")
    return value


async def run(args: argparse.Namespace) -> int:
    from ..database import LearningDatabase
    from ..importer import import_duckdb

    progress = _ProgressBar() if sys.stderr.isatty() else None
    async with LearningDatabase(args.dsn, database_path=args.data_dir) as db:
        summary = await import_duckdb(
            db,
            args.path,
            batch_size=args.batch_size,
            keep_embeddings=args.keep_embeddings,
            progress=progress,
        )
    if progress is not None:
        progress.finish()
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
        return 0
    counts: list[dict[str, Any]] = [
        {"what": "read", "rows": summary.read},
        {"what": "imported (new)", "rows": summary.imported},
        {"what": "updated (already present)", "rows": summary.updated},
        {"what": "skipped (invalid)", "rows": len(summary.skipped)},
    ]
    if summary.duplicates:
        counts.append({"what": "duplicate task_id (later row kept)", "rows": summary.duplicates})
    print(f"Imported {summary.path}")
    print(render(counts, ["what", "rows"]))
    print(
        f"\nEmbeddings: {summary.embeddings_computed} computed from the task description, "
        f"{summary.embeddings_kept} kept."
    )
    if summary.error_types_mapped:
        mapped = ", ".join(f"{k!r} x{n}" for k, n in summary.error_types_mapped.items())
        print(f"Error types outside the enum (kept in metadata.original_error_type): {mapped}")
    if summary.defaulted_columns:
        print(f"Columns absent from the file, set to defaults: {summary.defaulted_columns}")
    if summary.ignored_columns:
        print(f"Columns of the file not imported: {summary.ignored_columns}")
    if summary.skipped:
        print("\nSkipped rows, by reason:")
        for reason, rows in summary.skip_reasons().items():
            print(f"  {rows:>7}  {reason}")
        shown = summary.skipped[:SHOWN_SKIPPED]
        print(f"\nSkipped rows ({len(shown)} of {len(summary.skipped)}; --json lists all):")
        for skipped in shown:
            print(f"  {skipped.task_id}  {skipped.reason}")
    return 0


class _ProgressBar:
    """A one-line bar on stderr, redrawn after each batch."""

    width = 30

    def __call__(self, done: int, total: int) -> None:
        filled = self.width * done // total if total else self.width
        sys.stderr.write(
            f"\rImporting [{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} rows"
        )
        sys.stderr.flush()

    def finish(self) -> None:
        sys.stderr.write("\n")
        sys.stderr.flush()
