"""The command line as a new user meets it: every option explained with its default, help
that answers at once, tables whose numbers line up."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal

from orb_learning.cli import build_parser
from orb_learning.cli.tables import render

HEAVY = ("sqlalchemy", "pydantic", "asyncpg", "numpy", "torch", "onnxruntime", "alembic",
         "mcp", "starlette", "uvicorn", "opentelemetry", "google.protobuf")  # fmt: skip
"""What ``orb-learning --help`` must not import (each costs tens of milliseconds or more)."""


def parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from parsers(child)


def test_every_option_has_a_help_line_with_its_default() -> None:
    missing, no_default = [], []
    for parser in parsers(build_parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
                continue
            name = f"{parser.prog} {'/'.join(action.option_strings) or action.dest}"
            if not action.help:
                missing.append(name)
                continue
            shown = formatter._expand_help(action)
            default = action.default
            has_default = default not in (None, False, True) and default != []
            hidden = "default" not in shown or str(default) not in shown
            if action.option_strings and has_default and hidden:
                no_default.append(f"{name}: {shown!r}")
    assert not missing, f"options without a help line: {missing}"
    assert not no_default, f"options whose help hides the default: {no_default}"


def test_help_shows_the_defaults_of_similar() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "orb_learning.cli", "similar", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    text = " ".join(result.stdout.split())
    for shown in ("(default: 10)", "(default: 90)", "(default: 0.7)", "the task description"):
        assert shown in text, text


def test_help_imports_none_of_the_heavy_parts() -> None:
    """``orb-learning --help`` answers in well under 0.2 s because building the parser
    imports no driver, no ORM, no numerics and no server library (each subcommand imports
    them inside its handler)."""
    probe = (
        "import json, sys\n"
        "from orb_learning.cli import build_parser\n"
        "build_parser().format_help()\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} "
        f"or m in {HEAVY!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == []
    assert (
        subprocess.run(
            [sys.executable, "-m", "orb_learning.cli", "--help"], capture_output=True
        ).returncode
        == 0
    )


def test_the_numbers_of_a_column_share_one_format() -> None:
    rows = [
        {"similarity": 0.889, "avg_cost": 0.11, "success_rate": 0.5, "n": 3, "q": None},
        {"similarity": 0.7206, "avg_cost": 0.007291, "success_rate": 1.0, "n": 12, "q": 71.5},
        {"similarity": 1.0, "avg_cost": Decimal("2.5"), "success_rate": None, "n": 0, "q": 80.0},
    ]
    lines = render(rows, ["similarity", "avg_cost", "success_rate", "n", "q"]).splitlines()
    cells = [line.split() for line in lines[2:]]
    assert [c[0] for c in cells] == ["0.889", "0.721", "1.000"]
    assert [c[1] for c in cells] == ["0.11000", "0.00729", "2.50000"]
    assert [c[2] for c in cells] == ["50.0%", "100.0%", "-"]
    assert [c[3] for c in cells] == ["3", "12", "0"]
    assert [c[4] for c in cells] == ["-", "71.5", "80.0"]
    assert render([], ["x"]) == "(no rows)"
    assert render([{"big": 123456.7}, {"big": 2.25}], ["big"]).splitlines()[2:] == [
        "123,456.70",
        "2.25      ",
    ]


def test_the_one_time_model_export_is_shown_on_stderr() -> None:
    """The command shows the export's INFO lines whatever the log level, on stderr, bare
    (tests/test_embedding_backends.py checks what the export says, and when)."""
    probe = (
        "import logging\n"
        "from orb_learning import cli\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "cli._show_progress_of(cli.EXPORT_LOGGER)\n"
        "cli._show_progress_of(cli.EXPORT_LOGGER)  # main() run twice in one process\n"
        "from orb_learning.embeddings import _onnx_export\n"
        "_onnx_export.logger.info('Exporting the embedding model...')\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == "Exporting the embedding model...\n"
