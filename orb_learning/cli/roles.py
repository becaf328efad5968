"""``orb-learning grant-reader ROLE`` and ``grant-writer ROLE``: least-privilege roles.

Run them as the schema's owner (the role that ran the migrations). A password is only ever
read from the environment variable named by ``--password-env``, never from the command line
(which ``ps`` shows), and never printed or logged.
"""

from __future__ import annotations

import argparse
import os

from ..errors import ConfigurationError

COMMANDS = {
    "grant-reader": (
        "create a read-only role (dashboards, psql, analytics) or update its grants",
        "Creates ROLE if missing (NOLOGIN unless --login or --password-env) and grants it "
        "CONNECT, USAGE on the schema and SELECT on executions, feedback, the views and their "
        "materialized parts, view_refresh_log, view_watermarks, view_history_dirty, "
        "telemetry_dead_letters and alembic_version; "
        "nothing else. Also revokes EXECUTE on orb_learning_refresh_views() from PUBLIC. "
        "Idempotent: run it again after each migration.",
    ),
    "grant-writer": (
        "create a role for services that store executions, or update its grants",
        "Creates ROLE if missing (NOLOGIN unless --login or --password-env) and grants it the "
        "reader's rights plus INSERT/UPDATE on executions, INSERT on feedback, "
        "telemetry_dead_letters and view_refresh_log, UPDATE on view_watermarks, DELETE on "
        "view_history_dirty (the refresh clears the marks it answered), TEMPORARY on "
        "the database, EXECUTE on orb_learning_refresh_views() and (PostgreSQL 17+) MAINTAIN "
        "on the views, so that it can refresh them. No DELETE, TRUNCATE or DDL. Idempotent.",
    ),
}


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``grant-reader``/``grant-writer`` at the top level, and under ``db`` when that group
    is registered before this module (``orb-learning db grant-reader ROLE``)."""
    groups = [commands]
    db_actions = _subcommands_of(commands.choices.get("db"))
    if db_actions is not None:
        groups.append(db_actions)
    for group in groups:
        for name, (summary, description) in COMMANDS.items():
            add_command(group, name, summary, description)


def _subcommands_of(
    parser: argparse.ArgumentParser | None,
) -> argparse._SubParsersAction[argparse.ArgumentParser] | None:
    for action in parser._actions if parser is not None else ():
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def add_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    description: str,
) -> argparse.ArgumentParser:
    """Register one grant command (also usable by a command group, e.g. ``db``)."""
    parser = commands.add_parser(name, help=summary, description=description)
    parser.add_argument("role", metavar="ROLE", help="role name (created when missing)")
    parser.add_argument(
        "--login",
        action="store_true",
        help="let the role log in (without --password-env: no password is set, for "
        "peer/trust/certificate authentication)",
    )
    parser.add_argument(
        "--password-env",
        metavar="VAR",
        help="set the role's password from environment variable VAR (implies --login); "
        "it is sent as a SCRAM-SHA-256 verifier, never as text",
    )
    parser.set_defaults(handler=run, role_kind=name.removeprefix("grant-"))
    return parser


def password_from(variable: str | None) -> str | None:
    """The password held by environment variable ``variable`` (None when not asked)."""
    if variable is None:
        return None
    value = os.environ.get(variable)
    if not value:
        raise ConfigurationError(f"--password-env {variable}: the variable is unset or empty")
    return value


async def run(args: argparse.Namespace) -> int:
    from ..database import LearningDatabase
    from ..roles import grant_reader, grant_writer

    password = password_from(args.password_env)
    grant = grant_writer if args.role_kind == "writer" else grant_reader
    database = LearningDatabase(args.dsn, database_path=args.data_dir, preload_model=False)
    async with database as db, db.connection() as connection:
        report = await grant(connection, args.role, login=args.login, password=password)
    print(report.describe())
    return 0
