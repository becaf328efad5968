"""Secret redaction for execution and feedback text, applied before embedding and storage.

Agents paste tokens into task descriptions, stack traces and metadata; stored verbatim they
would reach the embedding, the Parquet archives and every reader role. Each secret becomes a
typed placeholder (``[REDACTED:aws_access_key]``), only the secret part where the shape allows,
so the text keeps its meaning for search and for readers.

The shapes are Yelp's detect-secrets regex plugins (AWS, GitHub, GitLab, Slack, JWT, private
keys, Stripe, OpenAI, npm, PyPI, Azure storage, SendGrid, Square, Twilio, Mailchimp, Telegram,
Discord, URL passwords), plus a few it lacks (``_OWN``). Left out on purpose: the entropy and
keyword detectors (HighEntropyString, KeywordDetector), which would redact hashes, UUIDs and
ordinary words and ruin search, and the keyword-triggered IBM, Cloudant and SoftLayer ones
(which also cost 50-75 µs per KB); Artifactory (its ``AP…`` shape matches identifiers) and
IPPublic (an address is not a secret).

detect-secrets (and the ``requests`` it imports) costs 50-110 ms to import, so it is loaded on
the first redaction, not at import: producers importing the models stay fast.
"""

from __future__ import annotations

import copy
import functools
import importlib
import re
from collections.abc import Callable
from typing import Any, NamedTuple

from .models import ExecutionRecord, FeedbackRecord

__all__ = [
    "PLACEHOLDER_PREFIX",
    "Redactor",
    "count_placeholders",
    "redact_feedback",
    "redact_json",
    "redact_record",
    "redact_secrets",
    "redaction_kinds",
    "resolve",
]

Redactor = Callable[[str], str]
"""A text in, the same text with secrets replaced by placeholders out."""

PLACEHOLDER_PREFIX = "[REDACTED:"
_PLACEHOLDER = re.compile(r"\[REDACTED:[a-z0-9_]+\]")
_EMPTY_FALLBACK = "[REDACTED:text]"  # when a caller's redactor blanks a whole field

# Shapes detect-secrets 1.5.0 lacks, each minimal; charsets from the vendors' documentation.
_QUERY_NAMES = ("access_token", "api_key", "apikey", "password", "passwd", "secret", "token", "sig")
_OWN = {
    # `Authorization: Bearer …` / `Basic …` (header, JSON or dict form): only the credential.
    "auth_header": r"(?i:(?<![\w-])(?:proxy-)?authorization)[\"']?\s*[:=]\s*[\"']?"
    r"(?i:{schemes})\s+([A-Za-z0-9\-._~+/]{{8,}}=*)",
    # A bare `Bearer <token>`: 20+ chars with a digit and a letter, so "Bearer token" stays.
    "bearer": r"(?i:\bbearer)\s+([A-Za-z0-9\-._~+/]{20,}=*)",
    # `?access_token=…`, `&sig=…` (Azure SAS): `=`-led with fixed lookbehinds, to scan fast.
    "url_query": "=(?:"
    + "|".join(f"(?<=[?&](?i:{name})=)" for name in _QUERY_NAMES)
    + r")([^&\s#\"'<>{}$\[\]]{4,})",
    "aws_secret": r"(?i:aws_?secret_?(?:access_?)?key)[\"']?\s*[:=]\s*[\"']?"
    r"([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",  # unquoted, as in env dumps: theirs needs quotes
    "github_pat": r"github_pat_[A-Za-z0-9_]{22,}",  # fine-grained tokens
    "anthropic": r"sk-ant-[A-Za-z0-9_-]{20,}",
    "openai_project": r"sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}",  # theirs: legacy only
    "google": r"AIza[0-9A-Za-z_-]{35}",
    "npm": r"npm_[A-Za-z0-9]{36}(?![A-Za-z0-9])",  # theirs: only the .npmrc line
    # Their .npmrc shape, `//host/:_authToken=…`, minus its `//.+/`, quadratic on long lines.
    "npmrc": r":_authToken=\s*(npm_[^\s\"']+|[A-Fa-f0-9-]{36})",
    "putty": r"PuTTY-User-Key-File-\d+:.*?(?:Private-MAC: *[0-9a-fA-F]+|\Z)",
}
# A token starts a run: no match inside a word, nor a quadratic rescan of `sk-sk-sk-…`.
_GUARD = r"(?<![A-Za-z0-9_-])"
_EXTEND = r"[A-Za-z0-9_-]*"  # ...and is redacted to the end of its run, so no tail leaks


class _Rule(NamedTuple):
    kind: str
    regex: re.Pattern[str]
    gate: str | None  # a literal-led regex searched first (in the lowered text if lower)
    lower: bool
    sub: Callable[[str], str]


def _rule(
    kind: str,
    regex: re.Pattern[str] | str,
    gate: str | None = None,
    *,
    lower: bool = False,
    group: int = 0,
    keep: int = 0,
    check: Callable[[str], bool] | None = None,
) -> _Rule:
    """A shape. The gate exists because a literal scans ~10x faster than a regex led by a
    lookbehind, a class or case-insensitivity. ``group`` holds the secret, ``keep`` leading
    chars of the match stay visible, ``check`` may veto a match."""
    regex = re.compile(regex) if isinstance(regex, str) else regex

    def replace(match: re.Match[str]) -> str:
        start, end = match.span(group)
        if start < 0:
            return match.group()
        start = max(start, match.start() + keep)
        if check is not None:
            try:
                if not check(match.string[start:end]):
                    return match.group()
            except Exception:  # a failing check must not leak: redact
                pass
        text = match.string
        return f"{text[match.start() : start]}[REDACTED:{kind}]{text[end : match.end()]}"

    return _Rule(kind, regex, gate, lower, functools.partial(regex.sub, replace))


def _token(
    kind: str, pattern: re.Pattern[str] | str, gate: str | None = None, guard: bool = False
) -> _Rule:
    """A whole-match token rule, guarded (see ``_GUARD``) and extended (``_EXTEND``)."""
    if isinstance(pattern, str):
        pattern = re.compile(pattern)
    regex = re.compile(f"{_GUARD if guard else ''}(?:{pattern.pattern}){_EXTEND}", pattern.flags)
    return _rule(kind, regex, gate, lower=bool(pattern.flags & re.I))


def _plugin(module: str, detector: str) -> Any:
    """A detect-secrets plugin class."""
    return getattr(importlib.import_module(f"detect_secrets.plugins.{module}"), detector)


def _ds(module: str, detector: str, index: int = 0) -> re.Pattern[str]:
    """One pattern of a detect-secrets plugin's denylist."""
    return _plugin(module, detector).denylist[index]  # type: ignore[no-any-return]


def _mixed(token: str) -> bool:
    return any(c.isdigit() for c in token) and any(c.isalpha() for c in token)


@functools.cache
def _rules() -> tuple[_Rule, ...]:
    """Built once, on first use. Blocks go first, specific kinds before the generic header
    and URL shapes, whose charsets exclude ``[`` so that placeholders are never re-matched."""
    # PrivateKeyDetector matches the BEGIN line only: redact the block, or to the end.
    starts = [p.pattern for p in _plugin("private_key", "PrivateKeyDetector").denylist]
    labels = [s[6:] for s in starts if s.startswith("BEGIN ")] + ["ENCRYPTED PRIVATE KEY"]
    pem = (
        rf"-{{4,5}} ?BEGIN (?P<label>{'|'.join(map(re.escape, labels))}) ?-{{4,5}}"
        r".*?(?:-{4,5} ?END (?P=label) ?-{4,5}|\Z)"
    )
    # JwtTokenDetector's signature part is lazy (it would stay visible): greedy here, minus a
    # sentence's final dot, and guarded; its check that header and payload are JSON is kept.
    jwt = _plugin("jwt", "JwtTokenDetector")
    jwt_re = _GUARD + jwt.denylist[0].pattern.removesuffix("*?") + r"*(?<!\.)"
    hook = _ds("slack", "SlackDetector", 1)
    hook = re.compile(hook.pattern + _EXTEND, hook.flags)  # keep: https://hooks.slack.com/services/
    telegram = _ds("telegram_token", "TelegramBotTokenDetector")
    header, auth = _OWN["auth_header"], "authorization"
    return (
        _rule("private_key", re.compile(pem, re.S), "PRIVATE KEY"),
        _rule("private_key", re.compile(_OWN["putty"], re.S)),
        _token("aws_access_key", _ds("aws", "AWSKeyDetector"), "A(?:3T|BIA|CCA|KIA|SIA)", True),
        _rule("aws_secret_key", _ds("aws", "AWSKeyDetector", 1), "aws", lower=True, group=1),
        _rule("aws_secret_key", _OWN["aws_secret"], "aws", lower=True, group=1),
        _token("github_token", _ds("github_token", "GitHubTokenDetector")),
        _token("github_token", _OWN["github_pat"]),
        *(
            _token("gitlab_token", p, "gl" if "gl" in p.pattern[:3] else None)
            for p in _plugin("gitlab_token", "GitLabTokenDetector").denylist
        ),
        _token("slack_token", _ds("slack", "SlackDetector"), "xox"),
        _rule("slack_webhook", hook, "hooks.slack", lower=True, keep=33),
        _token("stripe_key", _ds("stripe", "StripeDetector"), "k_live_"),
        _token("anthropic_key", _OWN["anthropic"], "sk-"),
        _token("openai_key", _ds("openai", "OpenAIDetector"), "T3BlbkFJ", True),
        _token("openai_key", _OWN["openai_project"], "sk-"),
        _token("google_api_key", _OWN["google"]),
        _rule("npm_token", _OWN["npmrc"], group=1),
        _token("npm_token", _OWN["npm"], "npm_", True),
        _token("pypi_token", _ds("pypi_token", "PypiTokenDetector"), "pypi-"),
        _token("pypi_token", _ds("pypi_token", "PypiTokenDetector", 1), "pypi-"),
        _rule("azure_storage_key", _ds("azure_storage_key", "AzureStorageKeyDetector"), keep=11),
        _token("sendgrid_key", _ds("sendgrid", "SendGridDetector")),
        _token("square_oauth_secret", _ds("square_oauth", "SquareOAuthDetector")),
        _token("twilio_key", _ds("twilio", "TwilioKeyDetector"), "AC[a-z0-9]{32}", True),
        _token("twilio_key", _ds("twilio", "TwilioKeyDetector", 1), "SK[a-z0-9]{32}", True),
        _token("mailchimp_key", _ds("mailchimp", "MailchimpDetector"), r"-us\d", True),
        _token("telegram_token", telegram, r":[\w-]{35}", True),
        _token("discord_token", _ds("discord", "DiscordBotTokenDetector"), r"\.[\w-]{6}\.", True),
        _rule("jwt", jwt_re, check=jwt.is_formally_valid),
        _rule("basic_auth", header.format(schemes="basic"), auth, lower=True, group=1),
        _rule("bearer_token", header.format(schemes="bearer|token"), auth, lower=True, group=1),
        _rule("bearer_token", _OWN["bearer"], "bearer", lower=True, group=1, check=_mixed),
        _rule("url_password", _ds("basic_auth", "BasicAuthDetector"), group=1),
        _rule("url_secret", _OWN["url_query"], group=1),
    )


@functools.cache
def _engine() -> tuple[tuple[tuple[re.Pattern[str], bool], ...], tuple[tuple[int, _Rule], ...]]:
    """The distinct gates, and each rule with the index of its gate (-1: none)."""
    rules = _rules()
    keys = list(dict.fromkeys((rule.gate, rule.lower) for rule in rules if rule.gate))
    gates = tuple((re.compile(gate), lower) for gate, lower in keys)
    return gates, tuple((keys.index((r.gate, r.lower)) if r.gate else -1, r) for r in rules)


def _active(text: str) -> list[_Rule]:
    """The rules that match ``text``: a gated rule's regex runs only if its gate matches."""
    gates, rules = _engine()
    lowered = text.lower()  # only for gates of case-insensitive rules
    hits = [gate.search(lowered if lower else text) is not None for gate, lower in gates]
    return [rule for g, rule in rules if (g < 0 or hits[g]) and rule.regex.search(text)]


def _apply(text: str, rules: list[_Rule]) -> str:
    for rule in rules:  # later rules skip earlier placeholders: their charsets exclude `[`
        text = rule.sub(text)
    return text


def redact_secrets(text: str) -> str:
    """The default redactor; returns ``text`` itself when it holds no secret."""
    out = _apply(text, rules) if (rules := _active(text)) else text
    return text if out == text else out  # a vetoed match rebuilds an equal string


def redaction_kinds() -> frozenset[str]:
    """The kinds the default redactor can emit (loads the rules)."""
    return frozenset(rule.kind for rule in _rules())


def count_placeholders(text: str) -> int:
    """The number of ``[REDACTED:<kind>]`` placeholders in ``text``."""
    return len(_PLACEHOLDER.findall(text)) if PLACEHOLDER_PREFIX in text else 0


def _redact_text(text: str, redactor: Redactor) -> tuple[str, int]:
    """Redacted text and its count: new placeholders, or 1 if the text changed without any
    (a caller's redactor may mask differently), so that 0 means unchanged."""
    out = redactor(text)
    if out is text or out == text:
        return text, 0
    if text.strip() and not out.strip():
        out = _EMPTY_FALLBACK  # an empty required field would fail validation
    return out, max(count_placeholders(out) - count_placeholders(text), 1)


def redact_json(value: Any, redactor: Redactor) -> tuple[Any, int]:
    """Redact every string of an acyclic JSON-like value, dict keys included.

    Keys too, because metadata keyed by URL or token would otherwise leak; two keys that
    redact alike get a ``#2`` suffix rather than one silently replacing the other. Returns
    ``value`` itself when nothing was redacted, else a new tree (the input is never
    mutated). Iterative, so metadata nested as deep as ``json.dumps`` allows is fine.
    """
    count = 0
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any]] = [(value, root, 0)]
    while stack:
        item, parent, slot = stack.pop()
        if isinstance(item, str):
            parent[slot], n = _redact_text(item, redactor)
        elif isinstance(item, dict):
            out: dict[Any, Any] = {}
            parent[slot] = out
            for key, child in item.items():
                if isinstance(key, str):
                    base, n = _redact_text(key, redactor)
                    count, key, suffix = count + n, base, 1
                    while key in out:
                        suffix += 1
                        key = f"{base}#{suffix}"
                out[key] = None
                stack.append((child, out, key))
            continue
        elif isinstance(item, list):
            parent[slot] = items = [None] * len(item)
            stack.extend((child, items, i) for i, child in enumerate(item))
            continue
        elif isinstance(item, tuple):  # not JSON, but json.dumps takes it: kept a tuple
            new, n = redact_json(list(item), redactor)
            parent[slot] = tuple(new)
        else:
            parent[slot], n = item, 0
        count += n
    return (root[0], count) if count else (value, 0)


def _narrowed(redactor: Redactor, texts: list[Any]) -> Redactor | None:
    """For the default redactor, one that runs only the rules matching somewhere in
    ``texts`` (nested), or None if none does: found in one pass over the strings joined by
    NUL (records cannot contain it, no shape matches or spans it), not a pass per string,
    since a record holds ~10 mostly short strings and a pass costs 5 µs at least."""
    if redactor is not redact_secrets:
        return redactor
    strings: list[str] = []
    while texts:
        item = texts.pop()
        if isinstance(item, str):
            strings.append(item)
        elif isinstance(item, dict):
            strings.extend(key for key in item if isinstance(key, str))
            texts.extend(item.values())
        elif isinstance(item, list | tuple):
            texts.extend(item)
    rules = _active("\x00".join(strings))
    return functools.partial(_apply, rules=rules) if rules else None


def _redact_fields(
    record: ExecutionRecord | FeedbackRecord, fields: tuple[str, ...], redactor: Redactor
) -> tuple[dict[str, Any], int]:
    update: dict[str, Any] = {}
    total = 0
    for name in fields:
        value = getattr(record, name)
        if isinstance(value, str):
            new, n = _redact_text(value, redactor)
            if n:
                update[name], total = new, total + n
    return update, total


_RECORD_TEXT: tuple[str, ...] = ("task_type", "task_description", "repo", "model_tier")
_RECORD_TEXT += ("pool_type", "swarm_topology", "error_message", "solution_summary")


def redact_record(record: ExecutionRecord, redactor: Redactor) -> ExecutionRecord:
    """Redact the record's text fields and metadata, counting in ``metadata["redactions"]``.

    Returns ``record`` itself when nothing was found (the common case stays cheap: with the
    default redactor, one scan of all the record's strings, ~25 µs); else a
    re-validated copy whose count adds to an existing integer count, so redaction is
    idempotent. A caller's redactor that breaks validation raises ``ValidationError``.
    """
    texts = [getattr(record, name) for name in _RECORD_TEXT] + [record.metadata]
    if (narrowed := _narrowed(redactor, texts)) is None:
        return record
    update, total = _redact_fields(record, _RECORD_TEXT, narrowed)
    metadata, n = redact_json(record.metadata, narrowed)
    if not (total := total + n):
        return record
    if metadata is record.metadata:
        metadata = copy.deepcopy(metadata)  # the copy must not share containers
    prior = metadata.get("redactions")
    prior = prior if isinstance(prior, int) and not isinstance(prior, bool) else 0
    metadata["redactions"] = prior + total
    return type(record).model_validate({**dict(record), **update, "metadata": metadata})


def redact_feedback(record: FeedbackRecord, redactor: Redactor) -> FeedbackRecord:
    """Redact ``comment`` and ``feedback_type``; ``record`` itself when nothing was found."""
    fields = ("comment", "feedback_type")
    if (narrowed := _narrowed(redactor, [getattr(record, name) for name in fields])) is None:
        return record
    update, total = _redact_fields(record, fields, narrowed)
    return type(record).model_validate({**dict(record), **update}) if total else record


def resolve(redact: Redactor | bool | None, *, default: bool) -> Redactor | None:
    """The redactor a :class:`~orb_learning.LearningDatabase` applies: ``None`` takes the
    setting (``default``: on unless ``ORB_LEARNING_REDACT_SECRETS=0``), ``True`` the
    built-in detector, ``False`` none, a callable that callable."""
    if redact is None:
        redact = default
    if redact is True:
        return redact_secrets
    if redact is False:
        return None
    if not callable(redact):
        raise TypeError(f"redact must be a callable, True or False, got {redact!r}")
    return redact
