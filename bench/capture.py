"""The statements the API really runs, captured from its connection, to EXPLAIN and replay.

Capturing (with asyncpg's query logger) rather than rebuilding the SQL from the library's
internals keeps the benchmark true to whatever version of the library is installed: it
sees the statements and arguments of a real call.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from orb_learning._catalog import CURRENT_VIEWS, PUBLIC_VIEWS

from . import data, queries
from .queries import SCOPES, key

PARAM = "tail-param"
"""Mode of the what-if: the library's fresh=True statement with its watermark sub-select
replaced by a parameter (only for a library whose statement has that sub-select)."""


@dataclass(frozen=True)
class Statement:
    query: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Captured:
    """The SELECT statements of one API call, in order; the last is the aggregate."""

    statements: tuple[Statement, ...]

    @property
    def main(self) -> Statement:
        return self.statements[-1]

    def replay(self, connection: asyncpg.Connection) -> Callable[[], Awaitable[Any]]:
        """A call running the same statements with the same arguments on ``connection``
        (outside the library's transaction, if it opens one)."""

        async def call() -> Any:
            result = None
            for statement in self.statements:
                result = await connection.fetch(statement.query, *statement.args)
            return result

        return call


async def capture_all(url: str) -> dict[str, Captured]:
    """Every API case (method, scope, fresh) called once on a one-connection pool."""
    logged: list[Statement] = []
    captured: dict[str, Captured] = {}
    async with data.open_database(url, pool_size=1) as db:
        async with db.connection() as connection:
            connection.add_query_logger(
                lambda query: logged.append(Statement(query.query, tuple(query.args or ())))
            )
        for method in queries.METHODS:
            for scope, repo in SCOPES.items():
                for fresh in (False, True):
                    logged.clear()
                    await queries.api_call(db, method, repo, fresh)()
                    selects = tuple(s for s in logged if _is_analytics(s.query))
                    captured[key(method, scope, f"fresh={fresh}")] = Captured(selects)
    return captured


def _watermark_subquery(view: str) -> str:
    return f"(SELECT watermark FROM view_watermarks WHERE view_name = '{view}')"


def reads_watermark_inline(captured: Captured, method: str) -> bool:
    """Does the statement read the watermark by a sub-select (unknown when planned)?"""
    return _watermark_subquery(queries.VIEWS[method]) in captured.main.query


async def tail_param(
    connection: asyncpg.Connection, captured: Captured, method: str
) -> Captured | None:
    """What-if: the statement with the watermark read first (a round trip of its own) and
    passed as a parameter, so the planner knows where the tail starts. None when the
    library's statement already gets its bound so."""
    if not reads_watermark_inline(captured, method):
        return None
    view = queries.VIEWS[method]
    main = captured.main
    position = 1 + max((int(n) for n in re.findall(r"\$(\d+)", main.query)), default=0)
    read = Statement("SELECT watermark FROM view_watermarks WHERE view_name = $1", (view,))
    watermark = await connection.fetchval(read.query, *read.args)
    query = main.query.replace(_watermark_subquery(view), f"${position}::timestamptz")
    return Captured((*captured.statements[:-1], read, Statement(query, (*main.args, watermark))))


def _is_analytics(query: str) -> bool:
    """A query of the call (not the pool's reset on release, nor BEGIN/SET/COMMIT)."""
    words = query.split(None, 1)
    first = words[0].upper() if words else ""
    relations = (
        "executions",
        "view_watermarks",
        *(view.name for view in CURRENT_VIEWS),
        *(view.name for view in PUBLIC_VIEWS),  # the plain views over them (0007)
    )
    return first in ("SELECT", "WITH") and any(name in query for name in relations)
