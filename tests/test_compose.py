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


def test_grafana_reader_creates_the_role_the_data_source_uses_after_migrate() -> None:
    services = compose()["services"]
    reader = services["grafana-reader"]
    assert reader["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert reader["restart"] == "no"
    environment = reader["environment"]
    url = services["migrate"]["environment"]["ORB_LEARNING_DATABASE_URL"]
    assert environment["ORB_LEARNING_DATABASE_URL"] == url
    assert "${ORB_LEARNING_GRAFANA_DB_PASSWORD" in environment["ORB_LEARNING_GRAFANA_DB_PASSWORD"]
    # the same light install as migrate, then the grant command of this package
    install, _, invocation = reader["command"].partition(" && exec python -m orb_learning.cli ")
    assert install == services["migrate"]["command"].partition(" && ")[0]
    from orb_learning.cli import build_parser

    args = build_parser().parse_args(invocation.strip().rstrip('"').split())
    source = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/orb-learning.yaml").read_text()
    )["datasources"][0]
    assert args.command == "grant-reader" and args.role == source["user"]
    assert args.password_env == "ORB_LEARNING_GRAFANA_DB_PASSWORD"
    assert source["secureJsonData"]["password"] == "${ORB_LEARNING_GRAFANA_DB_PASSWORD}"


def test_grafana_is_provisioned_read_only_and_starts_after_its_role() -> None:
    grafana = compose()["services"]["grafana"]
    assert grafana["image"].startswith("grafana/grafana-oss:")
    assert grafana["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert grafana["depends_on"]["grafana-reader"]["condition"] == "service_completed_successfully"
    environment = grafana["environment"]
    assert environment["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert environment["GF_SECURITY_ADMIN_PASSWORD"].startswith("${")  # from the environment
    reader = compose()["services"]["grafana-reader"]["environment"]
    variable = "ORB_LEARNING_GRAFANA_DB_PASSWORD"
    assert environment[variable] == reader[variable]  # Grafana logs in with what was set
    mounts = {}
    for volume in grafana["volumes"]:
        source, target, mode = volume.split(":")
        assert mode == "ro" and (ROOT / source).is_dir(), volume
        mounts[target] = source
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    provider = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/orb-learning.yaml").read_text()
    )["providers"][0]
    dashboards = ROOT / mounts[provider["options"]["path"]]
    assert (dashboards / "orb-learning.json").is_file()
    home = environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/orb-learning.json"
