"""The DDL of a materialized view: its SQL, the unique index REFRESH ... CONCURRENTLY
needs, its comments. The versioned definitions use it (:mod:`._views`, :mod:`._sealed`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MaterializedView:
    """A materialized view with the unique index that REFRESH ... CONCURRENTLY needs."""

    name: str
    select: str
    unique_columns: tuple[str, ...]
    comment: str
    column_comments: dict[str, str] = field(default_factory=dict)
    indexes: tuple[tuple[str, str], ...] = ()
    """Further (non-unique) indexes: (name, column list)."""

    @property
    def unique_index(self) -> str:
        return f"uq_{self.name}"

    def create_statements(self) -> list[str]:
        """DDL creating the view, its unique index and its comments (no user values)."""
        columns = ", ".join(self.unique_columns)
        statements = [
            f"CREATE MATERIALIZED VIEW {self.name} AS\n{self.select}",
            f"CREATE UNIQUE INDEX {self.unique_index} ON {self.name} ({columns})",
            *(f"CREATE INDEX {name} ON {self.name} ({cols})" for name, cols in self.indexes),
            f"COMMENT ON MATERIALIZED VIEW {self.name} IS {literal(self.comment)}",
        ]
        statements += [
            f"COMMENT ON COLUMN {self.name}.{column} IS {literal(text)}"
            for column, text in self.column_comments.items()
        ]
        return statements

    def drop_statement(self) -> str:
        return f"DROP MATERIALIZED VIEW IF EXISTS {self.name}"


def literal(text: str) -> str:
    """Quote a constant of this module as an SQL string literal (DDL takes no parameters)."""
    return "'" + text.replace("'", "''") + "'"


_TRANSITIONS = {
    "INSERT": "REFERENCING NEW TABLE AS new_rows ",
    "UPDATE": "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows ",
    "DELETE": "REFERENCING OLD TABLE AS old_rows ",
    "TRUNCATE": "",
}


def statement_triggers(
    prefix: str,
    function: str,
    *,
    events: tuple[str, ...] = ("INSERT", "UPDATE", "DELETE", "TRUNCATE"),
    create: str = "CREATE TRIGGER",
) -> tuple[str, ...]:
    """AFTER ... FOR EACH STATEMENT triggers of ``executions``, one per event, named
    ``<prefix>_<event>``, each with its statement's transition tables (``new_rows``,
    ``old_rows``)."""
    return tuple(
        f"{create} {prefix}_{event.lower()} AFTER {event} ON executions "
        f"{_TRANSITIONS[event]}FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        for event in events
    )
