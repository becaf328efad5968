"""The README is the interface: its Quick start demo and every Python example run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import fresh_database

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
DOCS = [ROOT / "docs" / "errors.md"]  # pages whose Python examples are complete programs
DOC_EXAMPLES = [
    (page.name, code)
    for page in DOCS
    for code in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL)
]


def run(args: list[str], env_url: str | None, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ORB_LEARNING_DATABASE_URL"}
    if env_url is not None:
        env["ORB_LEARNING_DATABASE_URL"] = env_url
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_readme_has_examples_for_each_feature() -> None:
    assert len(EXAMPLES) >= 4
    joined = "\n".join(EXAMPLES)
    for feature in (
        "find_similar_executions",
        "store_executions",
        "get_tier_performance",
        "get_pool_performance",
        "get_solution_patterns",
        "refresh_views",
        "ValidationError",
    ):
        assert feature in joined, f"README shows no runnable example of {feature}"


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
async def test_readme_example_runs(
    index: int, server_url: str, template_url: str, tmp_path: Path
) -> None:
    script = tmp_path / "example.py"
    script.write_text(EXAMPLES[index])
    async with fresh_database(server_url) as url:
        result = run([sys.executable, str(script)], url, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize(("page", "code"), DOC_EXAMPLES, ids=[p for p, _ in DOC_EXAMPLES])
async def test_docs_example_runs(
    page: str, code: str, server_url: str, template_url: str, tmp_path: Path
) -> None:
    script = tmp_path / "example.py"
    script.write_text(code)
    async with fresh_database(server_url) as url:
        result = run([sys.executable, str(script)], url, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]


def test_quick_start_demo_runs_on_the_embedded_server(tmp_path: Path) -> None:
    """`orb-learning demo` with no DSN: starts an embedded server under ./data/learning."""
    result = run(
        [sys.executable, "-m", "orb_learning.cli", "demo", "--rows", "120"], None, tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "Stored 120 executions" in out
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
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Stored 40 executions" in result.stdout
    assert not (tmp_path / "data").exists(), "an external DSN must not start the embedded server"
