"""The docs never lie: every fenced block of README.md and docs/**/*.md runs, or says why not.

Each block is classified by its language (the word after the opening fence) and by the HTML
comment on the line right before the fence, if any (a *marker*, invisible on the rendered
page, visible in the source):

- ``python``: a complete program, run by this interpreter in an empty temporary directory
  with ``ORB_LEARNING_DATABASE_URL`` set to a fresh migrated database; it must exit 0.
- ``bash`` (``sh``, ``shell``, ``console``): a script, run by ``bash -e -o pipefail``
  against a fresh migrated database (``ORB_LEARNING_DATABASE_URL``; the placeholder
  ``postgresql://user:password@host:5432/orb_learning``, which the docs write for "your
  server", is replaced by that database's URL), with this virtual environment's
  ``orb-learning``, ``alembic`` and ``python`` first on PATH, in a temporary directory laid
  out like a checkout: ``alembic.ini``, ``alembic/`` and ``examples/`` linked in and
  ``data/learning.db``, a small first-version DuckDB file (tests/test_import_duckdb.py's
  rows, four of them invalid). It must exit 0. Roles it creates are dropped afterwards.
- ``sql``: on docs/psql.md, a cookbook query with its ``<!-- columns: ... -->`` marker, run
  by tests/test_psql_cookbook.py (this module checks that the cookbook parser sees every
  one of them); elsewhere, run on a fresh migrated database.
- ``text``: not code (an output, a signature, a diagram, psql's own display): not run.

Markers:

- ``<!-- not run: REASON -->``: the block is not run, for the reason given (it must not be
  empty). Kept for what cannot run here: a Docker engine, a pg_cron server, a browser, the
  Quick start's installs into a new virtual environment (CI's .ci/run runs the test command,
  checked verbatim below; tests/test_readme.py runs the demo), the 20-minute benchmark.
- ``<!-- run: embedded -->``: run without ``ORB_LEARNING_DATABASE_URL``, so that it starts
  the embedded server under ``./data/learning`` of its temporary directory.
- ``<!-- run: until interrupted -->``: a command that runs until Ctrl-C; it must print
  something, then stop within a minute of SIGINT (status 0, or the status of SIGINT).
  Options combine: ``<!-- run: embedded, until interrupted -->``.

A block of any other language, or without a runner and without a reason, fails
``test_every_block_is_run_or_says_why_not``.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import fresh_database

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.rglob("*.md"))]
PLACEHOLDER_URL = "postgresql://user:password@host:5432/orb_learning"
PYTHON = {"python", "py"}
SHELL = {"bash", "sh", "shell", "console"}
SQL = {"sql"}
TEXT = {"text"}
RUN_OPTIONS = {"embedded", "until interrupted"}
TIMEOUT = 300

FENCE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)\n"
    r"(?P<code>.*?)^(?P=indent)(?P=fence)[ \t]*$",
    re.M | re.S,
)
MARKER = re.compile(r"<!--\s*(?P<text>.*?)\s*-->\s*$", re.S)


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    language: str
    code: str
    marker: str | None

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def not_run(self) -> str | None:
        """The reason given for not running the block, if it gives one."""
        if self.marker is not None and self.marker.startswith("not run:"):
            return self.marker.removeprefix("not run:").strip()
        return None

    @property
    def run_options(self) -> set[str]:
        if self.marker is None or not self.marker.startswith("run:"):
            return set()
        return {option.strip() for option in self.marker.removeprefix("run:").split(",")}

    @property
    def cookbook(self) -> bool:
        return self.page == DOCS / "psql.md" and (self.marker or "").startswith("columns:")


def find_blocks(page: Path) -> list[Block]:
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        marker = MARKER.fullmatch(before)
        indent = match.group("indent")
        code = match.group("code")
        if indent:
            code = "".join(line.removeprefix(indent) for line in code.splitlines(keepends=True))
        found.append(
            Block(
                page=page,
                line=text.count("\n", 0, match.start()) + 1,
                language=match.group("info").strip().split(" ")[0].lower(),
                code=code,
                marker=marker.group("text") if marker else None,
            )
        )
    return found


BLOCKS = [block for page in PAGES for block in find_blocks(page)]


def runnable(languages: set[str]) -> list[Block]:
    return [b for b in BLOCKS if b.language in languages and b.not_run is None and not b.cookbook]


def problem(block: Block) -> str | None:
    """Why the collector can neither run ``block`` nor accept that it is not run."""
    if block.not_run is not None:
        return None if block.not_run else "a `not run:` marker without a reason"
    if block.language in TEXT:
        return "a `run:` marker on a text block" if block.run_options else None
    if block.language == "":
        return "a block without a language (write `text` for output that is not code)"
    if block.language not in PYTHON | SHELL | SQL:
        return f"no runner for `{block.language}` blocks and no `<!-- not run: ... -->` reason"
    unknown = block.run_options - RUN_OPTIONS
    if unknown:
        return f"unknown run options {sorted(unknown)} (known: {sorted(RUN_OPTIONS)})"
    if block.marker is not None and not (
        block.marker.startswith(("run:", "columns:")) or block.cookbook
    ):
        return f"an HTML comment before the block that is no marker: {block.marker!r}"
    if block.language in SQL and block.page == DOCS / "psql.md" and not block.cookbook:
        return "a psql.md query without its <!-- columns: ... --> (tests/test_psql_cookbook.py)"
    return None


# -- the inventory --------------------------------------------------------------------------


def test_every_block_is_run_or_says_why_not() -> None:
    problems = [f"{b.id}: {p}" for b in BLOCKS if (p := problem(b)) is not None]
    assert not problems, "\n".join(problems)
    assert len(runnable(PYTHON)) >= 10 and len(runnable(SHELL)) >= 5


def test_the_cookbook_parser_sees_every_sql_block_of_psql_md() -> None:
    from tests.test_psql_cookbook import cookbook

    lines = {query.line for query in cookbook()}
    blocks = [b for b in BLOCKS if b.page == DOCS / "psql.md" and b.language in SQL]
    assert blocks and {b.line + 1 for b in blocks} == lines


def test_the_quick_start_test_command_is_what_ci_runs() -> None:
    """The Quick start's second command (README.md, docs/getting-started.md) is not run
    here: .ci/run runs it, verbatim."""
    command = (
        "python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 "
        "&& pip install -e '.[dev]' && pytest"
    )
    shown = [b for b in BLOCKS if b.language in SHELL and b.code.strip().endswith("&& pytest")]
    assert {b.page for b in shown} == {README, DOCS / "getting-started.md"}
    assert all(b.code.strip() == command for b in shown), [b.id for b in shown]
    assert command in (ROOT / ".ci" / "run").read_text()


def test_the_configuration_page_names_every_setting() -> None:
    """Every Settings field and every ORB_LEARNING_* variable the code, the compose file or
    the tests read is on docs/configuration.md."""
    from orb_learning.config import Settings

    page = (DOCS / "configuration.md").read_text()
    missing = [f.name for f in fields(Settings) if f"`{f.name}`" not in page]
    sources = [
        *(ROOT / "orb_learning").rglob("*.py"),
        ROOT / "docker-compose.yml",
        ROOT / "tests" / "conftest.py",
        *(ROOT / "alembic").glob("*.py"),
    ]
    variables = {
        v for s in sources for v in re.findall(r"ORB_LEARNING_[A-Z_]*[A-Z]", s.read_text())
    }
    missing += sorted(v for v in variables if f"`{v}`" not in page)
    assert not missing, f"docs/configuration.md does not name: {missing}"


def slug(heading: str) -> str:
    """The anchor Python-Markdown's toc gives a heading (what mkdocs links to)."""
    text = re.sub(r"[`*_]", "", heading).strip().lower()
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", text))


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(h) for h in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, re.M)}


def test_the_readmes_links_resolve() -> None:
    """README.md is not part of the site, so mkdocs does not check its links: this does."""
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", README.read_text()):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        page = (ROOT / path) if path else README
        missing_anchor = anchor and page.suffix == ".md" and anchor not in anchors(page)
        if not page.exists() or missing_anchor:
            broken.append(target)
    assert not broken, f"README.md links to what does not exist: {broken}"


def test_the_site_builds_strict(tmp_path: Path) -> None:
    """`mkdocs build --strict`: every page in the nav, every link and anchor resolved, the
    reference pages rendered from the docstrings without a warning."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr[-5000:]


# -- running the blocks ---------------------------------------------------------------------


def environment(url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORB_LEARNING_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if url is not None:
        env["ORB_LEARNING_DATABASE_URL"] = url
    return env


def run(
    block: Block, args: list[str], url: str, cwd: Path
) -> subprocess.CompletedProcess[str] | None:
    """Run ``args`` for ``block``; fails the test on a bad exit, returns the result."""
    env = environment(None if "embedded" in block.run_options else url)
    if "until interrupted" in block.run_options:
        interrupted(block, args, env, cwd)
        return None
    result = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, (
        f"{block.id} exited {result.returncode}\n--- stdout\n{result.stdout[-3000:]}"
        f"\n--- stderr\n{result.stderr[-3000:]}"
    )
    return result


def interrupted(block: Block, args: list[str], env: dict[str, str], cwd: Path) -> None:
    """Run until the block has printed something, then Ctrl-C (SIGINT to its group)."""
    out, err = cwd / ".stdout", cwd / ".stderr"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=stdout, stderr=stderr, start_new_session=True
        )
        try:
            deadline = time.monotonic() + TIMEOUT
            while process.poll() is None and time.monotonic() < deadline:
                if out.stat().st_size or err.stat().st_size:
                    time.sleep(2)  # let it get to work
                    break
                time.sleep(0.2)
            assert process.poll() is None, (
                f"{block.id} ended before it was interrupted ({process.returncode}):\n"
                f"{out.read_text()[-2000:]}\n{err.read_text()[-2000:]}"
            )
            os.killpg(process.pid, signal.SIGINT)
            status = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    assert status in (0, 130, -signal.SIGINT), (
        f"{block.id} exited {status} after SIGINT:\n{err.read_text()[-3000:]}"
    )
    assert out.read_text() or err.read_text()


@pytest.mark.parametrize("block", runnable(PYTHON), ids=lambda b: b.id)
async def test_python_block_runs(
    block: Block, server_url: str, template_url: str, tmp_path: Path
) -> None:
    script = tmp_path / "example.py"
    script.write_text(block.code)
    async with fresh_database(server_url) as url:
        run(block, [sys.executable, str(script)], url, tmp_path)


def checkout_like(directory: Path) -> Path:
    """A directory laid out like a checkout, with a first-version DuckDB file in data/."""
    from tests.test_import_duckdb import source_rows, write_duckdb

    for name in ("alembic.ini", "alembic", "examples"):
        (directory / name).symlink_to(ROOT / name)
    (directory / "data").mkdir()
    write_duckdb(directory / "data" / "learning.db", source_rows())
    return directory


def with_url(code: str, url: str) -> str:
    quoted = shlex.quote(url)
    for form in (f'"{PLACEHOLDER_URL}"', f"'{PLACEHOLDER_URL}'", PLACEHOLDER_URL):
        code = code.replace(form, quoted)
    return code


async def roles(url: str) -> set[str]:
    connection = await asyncpg.connect(url)
    try:
        return {r["rolname"] for r in await connection.fetch("SELECT rolname FROM pg_roles")}
    finally:
        await connection.close()


async def drop_roles(url: str, names: set[str]) -> None:
    """The roles a block created (roles belong to the server, not to its database)."""
    connection = await asyncpg.connect(url)
    try:
        for name in sorted(names):
            quoted = '"' + name.replace('"', '""') + '"'
            await connection.execute(f"DROP OWNED BY {quoted}")
            await connection.execute(f"DROP ROLE {quoted}")
    finally:
        await connection.close()


@pytest.mark.parametrize("block", runnable(SHELL), ids=lambda b: b.id)
async def test_shell_block_runs(
    block: Block, server_url: str, template_url: str, tmp_path: Path
) -> None:
    cwd = checkout_like(tmp_path)
    async with fresh_database(server_url) as url:
        before = await roles(url)
        script = cwd / ".block.sh"
        script.write_text(with_url(block.code, url))
        try:
            run(block, ["bash", "-e", "-o", "pipefail", str(script)], url, cwd)
        finally:
            await drop_roles(url, await roles(url) - before)


@pytest.mark.parametrize("block", runnable(SQL), ids=lambda b: b.id)
async def test_sql_block_runs(block: Block, server_url: str, template_url: str) -> None:
    async with fresh_database(server_url) as url:
        connection = await asyncpg.connect(url)
        try:
            await connection.execute(block.code)
        finally:
            await connection.close()
