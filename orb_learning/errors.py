"""One root error for the library, and the translation of asyncpg's errors into it.

Callers catch :class:`OrbLearningError` for anything this library raises on purpose.
Server errors keep their SQLSTATE (``sqlstate``) so code can branch on it, as asyncpg's do.
"""

from __future__ import annotations

from typing import Any


class OrbLearningError(Exception):
    """Root of every error raised by orb-learning."""


class NotInitializedError(OrbLearningError, RuntimeError):
    """A method was called before ``initialize()`` (or after ``close()``)."""


class ConfigurationError(OrbLearningError, ValueError):
    """A setting is missing or invalid (DSN, model, data directory...)."""


class EmbeddedServerUnavailable(ConfigurationError):
    """The embedded PostgreSQL server was asked for but cannot be used."""


class EmbeddingModelError(OrbLearningError):
    """The embedding model cannot be loaded, or does not fit the schema."""


class SchemaNotReadyError(OrbLearningError):
    """The database is not migrated to the revision this library needs."""


class DatabaseError(OrbLearningError):
    """An error reported by PostgreSQL, with its SQLSTATE."""

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class DatabaseUnavailableError(DatabaseError):
    """The server cannot be reached (down, restarting, refused, wrong host)."""


class IntegrityError(DatabaseError):
    """A constraint of the schema rejected the data (class 23)."""


class InvalidRecordError(OrbLearningError, ValueError):
    """A record of a batch failed validation; nothing of the batch was written."""


class UnknownExecutionError(OrbLearningError, LookupError):
    """A task_id that is not in the store was referenced."""


_UNAVAILABLE_CLASSES = ("08", "57P")  # connection exceptions, operator intervention


def translate(exc: BaseException) -> OrbLearningError:
    """Map an asyncpg (or OS) error to the library's hierarchy, keeping its cause."""
    sqlstate: str | None = getattr(exc, "sqlstate", None)
    message = _describe(exc)
    result: OrbLearningError
    if sqlstate == "0A000" and "vector" in str(exc):
        result = SchemaNotReadyError(
            f"pgvector is not installed on this server ({message}): use a server with the "
            "vector extension (e.g. the pgvector/pgvector:pg18 image, or the "
            "postgresql-NN-pgvector package), or the embedded server"
        )
    elif isinstance(exc, TimeoutError):  # an OSError, but the server did answer: too slowly
        result = DatabaseError(
            "the statement did not finish within command_timeout (default 30 s): raise it "
            "(LearningDatabase(command_timeout=...)) for bulk loads, or send smaller batches"
        )
    elif _connection_lost(exc) or (
        sqlstate is not None and sqlstate.startswith(_UNAVAILABLE_CLASSES)
    ):
        result = DatabaseUnavailableError(
            f"PostgreSQL is unavailable: {message}; check that the server is running and that "
            "--dsn / ORB_LEARNING_DATABASE_URL points at it",
            sqlstate=sqlstate,
        )
    elif sqlstate is not None and sqlstate.startswith("23"):
        result = IntegrityError(message, sqlstate=sqlstate)
    else:
        result = DatabaseError(message, sqlstate=sqlstate)
    result.__cause__ = exc
    return result


def _connection_lost(exc: BaseException) -> bool:
    """The network or the server went away: OS errors, and asyncpg's errors for a
    connection closed under a statement (they carry no SQLSTATE)."""
    if isinstance(exc, OSError | ConnectionError):
        return True
    import asyncpg

    return isinstance(exc, asyncpg.ConnectionDoesNotExistError) or (
        isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc)
    )


def driver_error(exc: BaseException) -> BaseException | None:
    """The asyncpg or OS error behind ``exc`` (SQLAlchemy and Alembic wrap them), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if is_translatable(current):
            return current
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return None


def is_translatable(exc: BaseException) -> bool:
    """Whether ``exc`` comes from the driver or the network (and so should be translated)."""
    import asyncpg

    return isinstance(
        exc, asyncpg.PostgresError | asyncpg.InterfaceError | OSError | ConnectionError
    )


def _describe(exc: BaseException) -> str:
    detail: Any = getattr(exc, "detail", None)
    text = str(exc) or type(exc).__name__
    return f"{text} ({detail})" if detail else text
