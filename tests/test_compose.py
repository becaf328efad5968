"""docker-compose.yml: the structure a deploy relies on (no Docker engine needed to check it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_postgres_service_has_pgvector_image_volume_and_health_check() -> None:
    postgres = compose()["services"]["postgres"]
    assert postgres["image"] == "pgvector/pgvector:pg18"
    assert any(v.endswith(":/var/lib/postgresql") for v in postgres["volumes"])
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert compose()["volumes"] is not None


def test_migrate_runs_alembic_upgrade_head_once_postgres_is_healthy() -> None:
    migrate = compose()["services"]["migrate"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "alembic upgrade head" in migrate["command"]
    assert migrate["restart"] == "no"
    url = migrate["environment"]["ORB_LEARNING_DATABASE_URL"]
    assert url.startswith("postgresql://") and "@postgres:5432/" in url
    # The migrate container runs from the repository root: the files it needs are there.
    assert (ROOT / "alembic.ini").is_file() and (ROOT / "alembic" / "env.py").is_file()


def test_refresher_runs_the_refresh_job_after_migrate() -> None:
    refresher = compose()["services"]["refresher"]
    assert refresher["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "orb_learning.cli refresh --every" in refresher["command"]
    assert refresher["stop_signal"] == "SIGTERM"
    assert "@postgres:5432/" in refresher["environment"]["ORB_LEARNING_DATABASE_URL"]
    # the command it runs exists in the package
    from orb_learning.cli import build_parser

    args = build_parser().parse_args(["refresh", "--every", "5m"])
    assert args.command == "refresh" and args.every.total_seconds() == 300
