"""``python -m bench``: every part of the benchmark in turn, then ``bench/RESULTS.md``.

Each part runs as a process of its own (as it would alone), one after the other so that
they never compete for the cores. ``--million`` adds the 1,000,000-row levels of search
and analytics (tens of minutes more); ``--only`` picks parts.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from bench import summary

BENCH_DIR = Path(__file__).resolve().parent


def commands(million: bool) -> dict[str, list[str]]:
    rows = ["--rows", "100000", *(["--rows", "1000000"] if million else [])]
    return {
        "search": ["search.py", *(["--million"] if million else [])],
        "embeddings": ["embeddings.py"],
        "analytics": ["run.py", *rows],
        "telemetry": ["telemetry.py"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--million", action="store_true", help="add the 1,000,000-row levels")
    parser.add_argument(
        "--only", action="append", choices=list(commands(False)), help="run only these parts"
    )
    args = parser.parse_args(argv)
    for name, command in commands(args.million).items():
        if args.only and name not in args.only:
            continue
        print(f"== {name}: {' '.join(command)}", file=sys.stderr, flush=True)
        script, *options = command
        done = subprocess.run([sys.executable, str(BENCH_DIR / script), *options], check=False)
        if done.returncode != 0:
            print(f"{name} failed (exit {done.returncode})", file=sys.stderr)
            return done.returncode
    summary.write()
    print(f"wrote {BENCH_DIR / 'RESULTS.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
