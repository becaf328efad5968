"""The image's build-time steps, once the wheel is installed: check what was installed and
bake the embedding model's one-time ONNX export into ``$ORB_LEARNING_EMBEDDING_CACHE``.

The Dockerfile runs this (``python /opt/orb-learning/bake.py``), and so does
tests/test_container.py, in a fresh virtual environment with the wheel installed: one list
of steps for both, so that the test runs what the image build runs. Any failure stops the
build with its message; a container then never exports, migrates from a checkout or
downloads at run time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

SERVER_MODULES = ("orb_learning.mcp_tools.server", "orb_learning.otlp")
"""Imported once here: the servers' dependencies are in the image, not only the CLI's."""


def fail(message: str) -> NoReturn:
    sys.exit(f"bake: {message}")


def check_installed_package() -> None:
    """orb_learning is the installed wheel (not a checkout on sys.path) with its migrations."""
    import orb_learning
    from orb_learning.migrations import head_revision, script_location

    package = Path(orb_learning.__file__).resolve().parent
    if not package.is_relative_to(Path(sys.prefix).resolve()):
        fail(f"orb_learning is imported from {package}, outside this environment {sys.prefix}")
    scripts = script_location()
    if scripts != package / "_alembic":
        fail(f"the migrations are read from {scripts}, not from the installed wheel")
    print(f"bake: orb_learning in {package}, migrations to revision {head_revision()}")


def check_command_line() -> None:
    """The entry point exists beside this interpreter and answers --help."""
    command = shutil.which("orb-learning", path=str(Path(sys.executable).parent))
    if command is None:
        fail(f"no orb-learning command in {Path(sys.executable).parent}")
    subprocess.run([command, "--help"], check=True, stdout=subprocess.DEVNULL)


def check_servers() -> None:
    import importlib

    for module in SERVER_MODULES:
        importlib.import_module(module)


def bake_model() -> None:
    """Export the default backend's graph now, where the image keeps it, offline."""
    configured = os.environ.get("ORB_LEARNING_EMBEDDING_CACHE", "").strip()
    if not configured:
        fail("set ORB_LEARNING_EMBEDDING_CACHE to where the image keeps the ONNX export")
    os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from orb_learning.embeddings import SCHEMA_DIMENSION, SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder()
    vectors = embedder.encode(["Fix the login bug"])
    if vectors.shape != (1, SCHEMA_DIMENSION):
        fail(f"the model gave vectors of shape {vectors.shape}")
    graphs = sorted(Path(configured).glob("*/*.onnx"))
    if not graphs:
        fail(f"no ONNX graph was written to {configured}")
    for graph in graphs:
        print(f"bake: {graph} ({graph.stat().st_size / 1e6:.0f} MB), backend {embedder.backend}")


def main() -> None:
    check_installed_package()
    check_command_line()
    check_servers()
    bake_model()


if __name__ == "__main__":
    main()
