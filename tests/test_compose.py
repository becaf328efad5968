"""docker-compose.yml: the structure a deploy relies on (no Docker engine needed to check it)."""

from __future__ import annotations

import argparse
import tomllib
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


ORB_LEARNING_SERVICES = ("migrate", "refresher", "grafana-reader", "mcp", "otlp")


def invocation(service: str) -> argparse.Namespace:
    """The service's command, parsed by the CLI of this package (the image's ENTRYPOINT)."""
    from orb_learning.cli import build_parser

    command = compose()["services"][service]["command"]
    assert isinstance(command, list), "exec form: no shell between the entrypoint and it"
    return build_parser().parse_args(command)


def test_orb_learning_services_run_the_image_built_here_and_nothing_else() -> None:
    services = compose()["services"]
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    built = {name for name, service in services.items() if "build" in service}
    assert built == set(ORB_LEARNING_SERVICES)
    for name in ORB_LEARNING_SERVICES:
        service = services[name]
        assert service["build"] == "." and service["image"] == f"orb-learning:{version}", name
        assert "entrypoint" not in service and "working_dir" not in service, name
        # no install at start, no checkout mounted in: only named volumes
        assert "pip" not in " ".join(service["command"]), name
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in compose()["volumes"], (name, volume)
        url = service["environment"]["ORB_LEARNING_DATABASE_URL"]
        assert url == services["migrate"]["environment"]["ORB_LEARNING_DATABASE_URL"], name
        assert url.startswith("postgresql://") and "@postgres:5432/" in url


def test_migrate_upgrades_with_the_packaged_migrations_once_postgres_is_healthy() -> None:
    migrate = compose()["services"]["migrate"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["restart"] == "no"
    args = invocation("migrate")
    assert (args.command, args.db_command, args.revision) == ("db", "upgrade", "head")


def test_refresher_runs_the_refresh_job_after_migrate() -> None:
    refresher = compose()["services"]["refresher"]
    assert refresher["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert refresher["stop_signal"] == "SIGTERM"
    args = invocation("refresher")
    assert args.command == "refresh" and args.every.total_seconds() == 300


def test_grafana_reader_creates_the_role_the_data_source_uses_after_migrate() -> None:
    reader = compose()["services"]["grafana-reader"]
    assert reader["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert reader["restart"] == "no"
    environment = reader["environment"]
    assert "${ORB_LEARNING_GRAFANA_DB_PASSWORD" in environment["ORB_LEARNING_GRAFANA_DB_PASSWORD"]
    args = invocation("grafana-reader")
    source = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/orb-learning.yaml").read_text()
    )["datasources"][0]
    assert args.command == "grant-reader" and args.role == source["user"]
    assert args.password_env == "ORB_LEARNING_GRAFANA_DB_PASSWORD"
    assert source["secureJsonData"]["password"] == "${ORB_LEARNING_GRAFANA_DB_PASSWORD}"


def test_mcp_serves_streamable_http_on_the_hosts_loopback_only() -> None:
    mcp = compose()["services"]["mcp"]
    assert invocation("mcp").http == ("0.0.0.0", 8000)  # every interface of the container
    assert mcp["ports"] == ["127.0.0.1:8000:8000"]  # no authentication: not beyond the host
    assert mcp["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_otlp_receives_traces_with_the_token_from_the_environment_and_keeps_its_spool() -> None:
    services = compose()["services"]
    otlp = services["otlp"]
    args = invocation("otlp")
    assert args.command == "serve" and args.otlp == ("0.0.0.0", 4318)
    assert otlp["environment"]["ORB_LEARNING_OTLP_TOKEN"].startswith("${ORB_LEARNING_OTLP_TOKEN")
    assert otlp["ports"] == ["127.0.0.1:4318:4318"]
    assert otlp["stop_signal"] == "SIGTERM" and otlp["depends_on"]["migrate"]
    # The spool path is relative: it lands in the image's WORKDIR, kept by the volume.
    workdir = [line.split()[1] for line in dockerfile_lines() if line.startswith("WORKDIR ")][-1]
    assert otlp["volumes"] == [f"orb-learning-otlp:{workdir}/{Path(args.spool).parts[0]}"]


def dockerfile_lines() -> list[str]:
    return (ROOT / "Dockerfile").read_text().splitlines()


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
