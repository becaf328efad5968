"""Connection strings: URLs and libpq key/value strings in, one URL form out, never a password
shown.

Both forms libpq documents are accepted (psql and most environments carry one or the
other): ``postgresql://user:pw@host:5432/db?sslmode=require`` and
``host=db.internal port=5432 dbname=orb user=app password='s3 cret'``. A key/value string
is turned into the equivalent URL once (:func:`normalize`), so everything downstream
(asyncpg, SQLAlchemy, Alembic) sees URLs only. Errors name what is wrong and show the
string only through :func:`redact`, or not at all when it cannot even be parsed: a
password never reaches a message, a log or a traceback.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from .errors import ConfigurationError

__all__ = [
    "asyncpg_dsn",
    "normalize",
    "parse_key_value",
    "redact",
    "server_settings",
    "sqlalchemy_url",
]

EXPECTED = (
    "expected postgresql://user:password@host:port/db or a libpq key/value string "
    "such as 'host=localhost dbname=orb user=app'"
)
_SCHEMES = ("postgresql", "postgres")
_PASSWORD_PARAMETER = re.compile(r"((?:^|&)password=)[^&]*", re.IGNORECASE)
_KEY_VALUE_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)", re.IGNORECASE)
_KEYWORD = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*")
_CONNECTION_PARAMETERS = frozenset(
    {"host", "port", "user", "password", "dbname", "database", "passfile", "service",
     "servicefile", "ssl", "sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl",
     "sslpassword", "ssl_min_protocol_version", "ssl_max_protocol_version",
     "target_session_attrs", "krbsrvname", "gsslib", "direct_tls"}
)  # fmt: skip


def is_url(dsn: str) -> bool:
    """Whether ``dsn`` is written as a URL (``scheme://``) rather than key/value pairs."""
    return "://" in dsn.split(" ", 1)[0] or dsn.startswith(tuple(f"{s}:" for s in _SCHEMES))


def normalize(dsn: str) -> str:
    """The connection string as a checked PostgreSQL URL (a key/value string converted)."""
    if not isinstance(dsn, str) or not dsn.strip():
        raise ConfigurationError(f"the database connection string is empty; {EXPECTED}")
    dsn = dsn.strip()
    url = dsn if is_url(dsn) else _url_from_pairs(parse_key_value(dsn))
    _check_url(url)
    return url


def parse_key_value(dsn: str) -> dict[str, str]:
    """libpq's ``keyword = value`` pairs (values single-quoted when they hold spaces, with
    ``\\'`` and ``\\\\`` escapes inside)."""
    pairs: dict[str, str] = {}
    position = 0
    while position < len(dsn):
        if dsn[position:].strip() == "":
            break
        match = _KEYWORD.match(dsn, position)
        if match is None:
            raise ConfigurationError(
                f"cannot read the connection string at character {position + 1} "
                f"(not 'keyword=value'); {EXPECTED}"
            )
        value, position = _value(dsn, match.end())
        pairs[match.group(1).lower()] = value
    if not pairs:
        raise ConfigurationError(f"the database connection string is empty; {EXPECTED}")
    return pairs


def _value(dsn: str, start: int) -> tuple[str, int]:
    """One value from ``start``: quoted (to its closing quote) or up to the next space."""
    quoted = dsn.startswith("'", start)
    chars: list[str] = []
    position = start + 1 if quoted else start
    while position < len(dsn):
        char = dsn[position]
        if char == "\\" and position + 1 < len(dsn):
            chars.append(dsn[position + 1])
            position += 2
            continue
        if (quoted and char == "'") or (not quoted and char.isspace()):
            return "".join(chars), position + 1
        chars.append(char)
        position += 1
    if quoted:
        raise ConfigurationError(f"unterminated quoted value in the connection string; {EXPECTED}")
    return "".join(chars), position


def _url_from_pairs(pairs: dict[str, str]) -> str:
    """The URL of libpq's pairs: user, password, host, port and dbname where a URL puts
    them (a socket directory or several hosts in the query), the rest as parameters."""
    pairs = dict(pairs)
    user, password = pairs.pop("user", None), pairs.pop("password", None)
    host, port = pairs.pop("host", ""), pairs.pop("port", None)
    database = pairs.pop("dbname", None) or pairs.pop("database", None)
    query: dict[str, str] = {}
    if host.startswith("/") or "," in host or "@" in host:
        query["host"], host = host, ""
    elif ":" in host:  # an IPv6 address
        host = f"[{host}]"
    if port is not None and not host:
        query["port"] = port
    userinfo = ""
    if user is not None:
        userinfo = quote(user, safe="")
        if password is not None:
            userinfo += ":" + quote(password, safe="")
        userinfo += "@"
    elif password is not None:
        query["password"] = password
    netloc = userinfo + host + (f":{port}" if port is not None and host else "")
    path = "/" + quote(database, safe="") if database else ""
    return urlunsplit(("postgresql", netloc, path, urlencode({**query, **pairs}), ""))


def _check_url(url: str) -> None:
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL": the message holds no part of the URL
        raise ConfigurationError(f"invalid database URL ({exc}); {EXPECTED}") from None
    if parts.scheme.split("+", 1)[0] not in _SCHEMES:
        raise ConfigurationError(f"not a PostgreSQL URL: {redact(url)!r}; {EXPECTED}")
    try:
        parts.port  # noqa: B018  (parsing it is the check)
    except ValueError:
        raise ConfigurationError(f"invalid port in {redact(url)!r}; {EXPECTED}") from None


def asyncpg_dsn(dsn: str) -> str:
    """The URL as asyncpg wants it (no ``+driver`` suffix)."""
    parts = urlsplit(normalize(dsn))
    return urlunsplit(parts._replace(scheme="postgresql"))


def sqlalchemy_url(dsn: str) -> str:
    """The URL as SQLAlchemy's asyncpg dialect wants it (``postgresql+asyncpg://``), without
    the server settings of the query string (see :func:`server_settings`)."""
    parts = urlsplit(normalize(dsn))
    kept = [(k, v) for k, v in parse_qsl(parts.query) if k in _CONNECTION_PARAMETERS]
    return urlunsplit(parts._replace(scheme="postgresql+asyncpg", query=urlencode(kept)))


def server_settings(dsn: str) -> dict[str, str]:
    """Query parameters that asyncpg sends as server settings (e.g. ``application_name``);
    SQLAlchemy would pass them as connect() arguments, so they travel apart."""
    query = urlsplit(normalize(dsn)).query
    return {k: v for k, v in parse_qsl(query) if k not in _CONNECTION_PARAMETERS}


def redact(dsn: str) -> str:
    """The connection string with its password replaced by ``***`` (URL or key/value), for
    logs and messages; a string that cannot be parsed at all becomes ``<unparsable>``."""
    if not is_url(dsn):
        return _KEY_VALUE_PASSWORD.sub(r"\1***", dsn)
    try:
        parts = urlsplit(dsn)
        password = parts.password
    except ValueError:
        return "<unparsable>"
    netloc = parts.netloc
    if password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':', 1)[0]}:***@{host}"
    query = _PASSWORD_PARAMETER.sub(r"\1***", parts.query)
    return urlunsplit(parts._replace(netloc=netloc, query=query))
