"""One root error for the library, classified so that callers know what to do with it.

Every error the library raises on purpose is an :class:`OrbLearningError`, and each says
whether retrying can help: ``transient`` is True when the same call may succeed later,
unchanged (the server was unreachable or restarting, a serialization conflict, a statement
timeout), and False when something must change first (the input, the schema, a setting, a
privilege). :func:`orb_learning.retry.retry` retries exactly the transient ones.
``rejects_input`` is True when the data itself was refused (a bad argument or record, a
value or constraint the server refuses, a row past a server limit): the same call with
other data can succeed, so a batch writer sets such records aside instead of waiting.

The hierarchy (``docs/errors.md`` has the table)::

    OrbLearningError
    ├── ArgumentError (ValueError)            a bad argument to a library call
    │   └── InvalidRecordError                a record of a batch failed validation
    ├── ConfigurationError (ValueError)       a setting is missing or invalid
    │   └── EmbeddedServerUnavailable
    ├── NotInitializedError (RuntimeError)
    ├── EmbeddingModelError
    ├── SchemaNotReadyError                   not migrated to this library's revision
    ├── UnknownExecutionError (LookupError)
    ├── ArchiveError                          a retention archive cannot be written
    └── DatabaseError                         from PostgreSQL, with its SQLSTATE
        ├── DataError                         class 22: a value the server refuses
        ├── IntegrityError                    class 23: a constraint refused the row
        ├── ProgramLimitError                 class 54: a row past a server limit
        ├── InsufficientPrivilegeError        42501: the role may not do this
        ├── QueryTimeoutError          (T)    command_timeout, or 57014 (canceled)
        ├── TransactionRetryError      (T)    40001 serialization, 40P01 deadlock
        └── DatabaseUnavailableError   (T)    class 08, 57P, or the connection was lost
            └── CommitOutcomeUnknownError (T) lost while the commit was in flight

(T): transient. A plain :class:`DatabaseError` is transient for the server's resource
classes (53: disk full, out of memory, too many connections; 55P03: lock not available).
Server errors keep their SQLSTATE (``sqlstate``), as asyncpg's do.
"""

from __future__ import annotations

from typing import Any, ClassVar


class OrbLearningError(Exception):
    """Root of every error raised by orb-learning; ``transient`` says whether the same call
    may succeed if retried later, unchanged, ``rejects_input`` whether the data was refused."""

    transient: bool = False
    rejects_input: bool = False


class ArgumentError(OrbLearningError, ValueError):
    """An argument of a library call is invalid (named in the message)."""

    rejects_input = True


class InvalidRecordError(ArgumentError):
    """A record of a batch failed validation; nothing of the batch was written."""


class ConfigurationError(OrbLearningError, ValueError):
    """A setting is missing or invalid (DSN, model, data directory...)."""


class EmbeddedServerUnavailable(ConfigurationError):
    """The embedded PostgreSQL server was asked for but cannot be used."""


class NotInitializedError(OrbLearningError, RuntimeError):
    """A method was called before ``initialize()`` (or after ``close()``)."""


class EmbeddingModelError(OrbLearningError):
    """The embedding model cannot be loaded, or does not fit the schema."""


class SchemaNotReadyError(OrbLearningError):
    """The database is not migrated to the revision this library needs."""


class UnknownExecutionError(OrbLearningError, LookupError):
    """A task_id that is not in the store was referenced."""


class ArchiveError(OrbLearningError):
    """A retention archive cannot be written where it was asked for (the path is named)."""


class DatabaseError(OrbLearningError):
    """An error reported by PostgreSQL (or met talking to it), with its SQLSTATE."""

    sqlstate_classes: ClassVar[tuple[str, ...]] = ()
    """The SQLSTATE prefixes :func:`translate` maps to this class."""

    def __init__(
        self, message: str, *, sqlstate: str | None = None, transient: bool | None = None
    ) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        if transient is not None:
            self.transient = transient


class DataError(DatabaseError):
    """The server refused a value (SQLSTATE class 22: out of range, invalid text...)."""

    rejects_input = True
    sqlstate_classes = ("22",)


class IntegrityError(DatabaseError):
    """A constraint of the schema rejected the data (class 23)."""

    rejects_input = True
    sqlstate_classes = ("23",)


class ProgramLimitError(DatabaseError):
    """A row past a limit of the server (class 54: an index entry or a value too large)."""

    rejects_input = True
    sqlstate_classes = ("54",)


class InsufficientPrivilegeError(DatabaseError):
    """The connected role lacks a privilege (42501): grant it, or connect as another."""

    sqlstate_classes = ("42501",)


class QueryTimeoutError(DatabaseError):
    """A statement ran past ``command_timeout`` (or was canceled, 57014)."""

    transient = True
    sqlstate_classes = ("57014",)


class TransactionRetryError(DatabaseError):
    """A serialization failure (40001) or deadlock (40P01): run the transaction again."""

    transient = True
    sqlstate_classes = ("40001", "40P01")


class DatabaseUnavailableError(DatabaseError):
    """The server cannot be reached (down, restarting, refused, wrong host), or the
    connection was lost under a statement."""

    transient = True
    sqlstate_classes = ("08", "57P")


class CommitOutcomeUnknownError(DatabaseUnavailableError):
    """The connection was lost while a write's commit was in flight: it may or may not have
    landed. Writes are upserts by ``task_id``, so retrying the same call is safe."""


_CLASSES: tuple[type[DatabaseError], ...] = (
    DataError,
    IntegrityError,
    ProgramLimitError,
    InsufficientPrivilegeError,
    QueryTimeoutError,
    TransactionRetryError,
    DatabaseUnavailableError,
)
_TRANSIENT_STATES = ("53", "55P03")  # insufficient resources; lock not available


def translate(exc: BaseException, *, committing: bool = False) -> OrbLearningError:
    """Map an asyncpg (or network) error to the library's hierarchy, keeping its cause.

    ``committing``: the error happened while a commit was in flight, so a lost connection
    leaves the outcome unknown (:class:`CommitOutcomeUnknownError`)."""
    if isinstance(exc, OrbLearningError):
        return exc
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
        result = QueryTimeoutError(
            "the statement did not finish within command_timeout (default 30 s): raise it "
            "(LearningDatabase(command_timeout=...)) for bulk loads, or send smaller batches"
        )
    elif sqlstate is None and connection_lost(exc):
        result = _unavailable(message, committing=committing)
    elif sqlstate is not None:
        result = _by_sqlstate(message, sqlstate, committing=committing)
    else:
        result = DatabaseError(message)
    result.__cause__ = exc
    return result


def from_sqlstate(message: str, sqlstate: str) -> DatabaseError:
    """The class of error for ``sqlstate`` (a server error reported as text, e.g. by the
    refresh routine's log)."""
    return _by_sqlstate(message, sqlstate, committing=False)


def _by_sqlstate(message: str, sqlstate: str, *, committing: bool) -> DatabaseError:
    for kind in _CLASSES:
        if sqlstate.startswith(kind.sqlstate_classes):
            if kind is DatabaseUnavailableError:
                return _unavailable(message, sqlstate=sqlstate, committing=committing)
            return kind(message, sqlstate=sqlstate)
    transient = sqlstate.startswith(_TRANSIENT_STATES)
    return DatabaseError(message, sqlstate=sqlstate, transient=transient)


def _unavailable(
    message: str, *, sqlstate: str | None = None, committing: bool
) -> DatabaseUnavailableError:
    if committing:
        return CommitOutcomeUnknownError(
            f"the connection to PostgreSQL was lost while the write was committing ({message}): "
            "it may or may not have been stored; retrying it is safe (writes are upserts by "
            "task_id)",
            sqlstate=sqlstate,
        )
    return DatabaseUnavailableError(
        f"PostgreSQL is unavailable: {message}; check that the server is running and that "
        "--dsn / ORB_LEARNING_DATABASE_URL points at it",
        sqlstate=sqlstate,
    )


def connection_lost(exc: BaseException) -> bool:
    """The network or the server went away: socket errors, and asyncpg's errors for a
    connection closed or broken under a statement (they carry no SQLSTATE)."""
    if isinstance(exc, OSError | ConnectionError):
        return True
    import asyncpg

    if isinstance(exc, asyncpg.ConnectionDoesNotExistError | asyncpg.InternalClientError):
        # InternalClientError: the protocol was left mid-operation ("cannot switch to
        # state ...; another operation is in progress") by a connection that broke.
        return True
    return isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc)


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
        exc,
        asyncpg.PostgresError
        | asyncpg.InterfaceError
        | asyncpg.InternalClientError
        | OSError
        | ConnectionError,
    )


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same call later, unchanged, may succeed."""
    return isinstance(exc, OrbLearningError) and exc.transient


def _describe(exc: BaseException) -> str:
    detail: Any = getattr(exc, "detail", None)
    text = str(exc) or type(exc).__name__
    return f"{text} ({detail})" if detail else text
