"""Dead letters: telemetry that could not become an execution, kept for inspection."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    import asyncpg


@dataclass(frozen=True)
class DeadLetter:
    """Raw events (JSON-able dicts) about one task, and why they were given up on."""

    task_id: UUID | None
    reason: str
    events: list[dict[str, Any]] = field(default_factory=list)
    first_seen_at: datetime = field(default_factory=lambda: datetime.now().astimezone())


def redacted(letter: DeadLetter, redactor: Callable[[str], str]) -> DeadLetter:
    """The letter with secrets in its events and reason replaced (see
    :mod:`orb_learning.redaction`); the letter itself when there were none."""
    from .redaction import redact_json

    events, found = redact_json(letter.events, redactor)
    reason = redactor(letter.reason)
    if not found and reason == letter.reason:
        return letter
    return replace(letter, events=events, reason=reason)


INSERT_DEAD_LETTER = """\
INSERT INTO telemetry_dead_letters (task_id, reason, events, first_seen_at)
VALUES ($1, $2, $3, $4)
ON CONFLICT (task_id, reason, first_seen_at) DO NOTHING"""


async def store_dead_letters(connection: asyncpg.Connection, letters: Sequence[DeadLetter]) -> int:
    """Insert the letters (again: no duplicate, per task, reason and first sighting)."""
    rows = [
        (letter.task_id, letter.reason.replace("\x00", ""), letter.events, letter.first_seen_at)
        for letter in letters
    ]
    if rows:
        from ._store import committing

        async with committing():  # executemany is atomic
            await connection.executemany(INSERT_DEAD_LETTER, rows)
    return len(rows)
