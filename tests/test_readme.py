"""The README is the front door: its Quick start demo runs as written, on the embedded server
and on an external one. (Every code block of the README and of docs/ runs in tests/test_docs.py.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import fresh_database

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def run(args: list[str], env_url: str | None, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ORB_LEARNING_DATABASE_URL"}
    if env_url is not None:
        env["ORB_LEARNING_DATABASE_URL"] = env_url
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_readme_has_examples_for_each_core_call() -> None:
    """The README shows a runnable example of each core call (tests/test_docs.py runs
    them, with every other block of the README and of docs/)."""
    assert len(EXAMPLES) >= 2
    joined = "\n".join(EXAMPLES)
    for call in (
        "store_execution",
        "find_similar_executions",
        "store_executions",
        "get_tier_performance",
        "get_pool_performance",
        "get_solution_patterns",
        "refresh_views",
    ):
        assert call in joined, f"README shows no runnable example of {call}"


def test_readme_stays_short() -> None:
    """What it is, the Quick start, an example per core call, the features, the tests: the
    rest lives in docs/ (the site)."""
    assert len(README.read_text().splitlines()) <= 260


def test_quick_start_demo_runs_on_the_embedded_server(tmp_path: Path) -> None:
    """`orb-learning demo` with no DSN: starts an embedded server under ./data/learning."""
    result = run(
        [sys.executable, "-m", "orb_learning.cli", "demo", "--rows", "120"], None, tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "Stored 120 sample executions" in out
    for heading in (
        "similar to",
        "Model tier performance",
        "Pool performance",
        "Top solution patterns",
    ):
        assert heading in out
    assert (tmp_path / "data" / "learning" / "PG_VERSION").exists()


async def test_demo_on_an_external_server_migrates_it_first(
    server_url: str, tmp_path: Path
) -> None:
    async with fresh_database(server_url, migrated=False) as url:
        args = [sys.executable, "-m", "orb_learning.cli", "--dsn", url, "demo", "--rows", "40"]
        result = run(args, None, tmp_path)
        again = run(args, None, tmp_path)  # the same sample: its rows are updated, not added
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Stored 40 sample executions" in result.stdout
    assert "the database holds 40." in result.stdout
    assert again.returncode == 0 and "the database holds 40." in again.stdout, again.stderr
    assert not (tmp_path / "data").exists(), "an external DSN must not start the embedded server"
