"""The local spool: telemetry that cannot wait in memory goes to JSON lines on disk, in order.

Files, in the spool path's directory (default ``data/telemetry-spool/``), of mode 0600
(they hold telemetry as captured, before redaction):

- ``spool.jsonl``: appended to, one fsync per batch; always the newest lines;
- ``spool.<n>.replaying.jsonl``: segments waiting to be replayed, oldest (lowest n) first;
- ``spool.refused.jsonl``: dead letters the database refused, kept for an operator (never
  replayed);
- ``spool.journal.<seq>.jsonl``: the write-ahead journal of captured events (:mod:`._journal`).

A replay starts by renaming ``spool.jsonl`` to the next segment, so what is appended during
a replay lands in a fresh ``spool.jsonl`` and is never lost; a segment is deleted only once
all of it is stored, so a crash mid-replay replays it again (writes are idempotent). Each
line is an object with a ``kind``: ``execution`` (``record``: the record's
``model_dump(mode="json")``), ``feedback``, ``dead_letter``, or ``pending`` (the raw event
of a half that had not met its other half at shutdown and could not be journaled); an
execution's ``q`` is the newest journal line it was made of. Appends are whole lines: a
write that fails or comes up short (disk full) is cut back with ``ftruncate``, and the
caller is told how many lines are there. File operations run in one dedicated thread, in
the order they are asked for, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, TypeVar
from uuid import UUID

from .._dead_letters import DeadLetter
from ..errors import ConfigurationError
from ..models import ExecutionRecord, FeedbackRecord
from ._events import Half

__all__ = ["DEFAULT_SPOOL_PATH", "FeedbackItem", "Item", "Spool", "decode", "encode"]

logger = logging.getLogger("orb_learning.telemetry")
DEFAULT_SPOOL_PATH = Path("data/telemetry-spool/spool.jsonl")
_T = TypeVar("_T")


@dataclass(frozen=True)
class FeedbackItem:
    """Feedback on its way to the store, with its raw event for a dead letter."""

    record: FeedbackRecord
    event: dict[str, Any]
    received_at: datetime


Item = ExecutionRecord | FeedbackItem | DeadLetter
"""What the writer stores: an execution, a feedback, or a dead letter."""


def encode(item: Item | Half, version: int | None = None) -> str:
    """One JSON line for the spool (``version``: an execution's newest journal line)."""
    entry: dict[str, Any]
    if isinstance(item, ExecutionRecord):
        entry = {"kind": "execution", "record": item.model_dump(mode="json")}
        if version is not None:
            entry["q"] = version
    elif isinstance(item, FeedbackItem):
        entry = {
            "kind": "feedback",
            "record": item.record.model_dump(mode="json"),
            "event": item.event,
            "received_at": item.received_at.isoformat(),
        }
    elif isinstance(item, DeadLetter):
        entry = {
            "kind": "dead_letter",
            "task_id": None if item.task_id is None else str(item.task_id),
            "reason": item.reason,
            "events": item.events,
            "first_seen_at": item.first_seen_at.isoformat(),
        }
    else:
        entry = {"kind": "pending", **item.as_event()}
    return json.dumps(entry, allow_nan=False)


def decode(line: str) -> Item | dict[str, Any]:
    """An item from a spool line, or a ``pending`` event as a dict; ValueError if bad."""
    return decode_entry(line)[0]


def decode_entry(line: str) -> tuple[Item | dict[str, Any], int | None]:
    """:func:`decode`, and an execution's journal version (``q``) when it has one."""
    entry = json.loads(line)
    kind = entry.get("kind") if isinstance(entry, dict) else None
    if kind == "execution":
        return ExecutionRecord.model_validate(entry["record"]), entry.get("q")
    return _decode(kind, entry), None


def _decode(kind: Any, entry: dict[str, Any]) -> Item | dict[str, Any]:
    if kind == "feedback":
        return FeedbackItem(
            FeedbackRecord.model_validate(entry["record"]),
            entry["event"],
            datetime.fromisoformat(entry["received_at"]),
        )
    if kind == "dead_letter":
        task_id = entry["task_id"]
        return DeadLetter(
            None if task_id is None else UUID(task_id),
            entry["reason"],
            entry["events"],
            datetime.fromisoformat(entry["first_seen_at"]),
        )
    if kind == "pending":
        return dict(entry)
    raise ValueError(f"unknown spool entry kind {kind!r}")


class Spool:
    """The spool files of one capture; ``lock()`` keeps a second process off them."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser().absolute()
        self.directory = self.path.parent
        self._stem = self.path.name.removesuffix(".jsonl")
        self._pattern = re.compile(rf"^{re.escape(self._stem)}\.(-?\d+)\.replaying\.jsonl$")
        self.refused_path = self.directory / f"{self._stem}.refused.jsonl"
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orb-spool")
        self._lock_file: IO[bytes] | None = None

    @property
    def stem(self) -> str:
        return self._stem

    async def _run(self, function: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def call(self, function: Callable[..., _T], *args: Any) -> _T:
        """Run a file operation in the spool's thread (after the ones asked before it)."""
        return await self._run(function, *args)

    # -- async face ------------------------------------------------------------------

    async def lock(self) -> None:
        await self._run(self._lock)

    async def append(
        self, items: Sequence[Item | Half], versions: Sequence[int | None] | None = None
    ) -> tuple[int, str | None]:
        """Encode and append (in the spool thread: the loop never serializes or waits);
        how many of the items are on disk (the first ones, whole lines), and the error
        that stopped the rest."""
        if not items:
            return 0, None
        return await self._run(self._append_items, self.path, items, versions)

    async def rotate(self) -> Path | None:
        """Make ``spool.jsonl`` the newest segment; None when it is missing or empty."""
        return await self._run(self._rotate)

    async def segments(self) -> list[Path]:
        return await self._run(self._segments)

    async def write_first(
        self, items: Sequence[Item], versions: Sequence[int | None] | None = None
    ) -> tuple[int, str | None]:
        """A segment replayed before every other (what was older than all of them); how
        many of the items are on disk, as :meth:`append`."""
        if not items:
            return 0, None
        return await self._run(self._write_first, items, versions)

    async def refuse(self, lines: Sequence[str]) -> tuple[int, str | None]:
        """Keep lines the database refuses (never replayed) for an operator."""
        if not lines:
            return 0, None
        return await self._run(self._append_lines, self.refused_path, lines)

    async def delete(self, segment: Path) -> None:
        await self._run(segment.unlink, True)

    async def read(self, segment: Path, size: int) -> AsyncIterator[list[str]]:
        """The segment's lines, ``size`` at a time."""
        handle = await self._run(_open_text, segment)
        try:
            while lines := await self._run(_read_lines, handle, size):
                yield lines
        finally:
            await self._run(handle.close)

    async def scan(self) -> tuple[int, list[dict[str, Any]]]:
        """Leftovers of a previous run, before anything is replayed: make every file a
        segment, and return the number of records in them and their pending events."""
        return await self._run(self._scan)

    async def close(self, timeout: float | None = None) -> None:
        """Unlock and stop the thread; past ``timeout`` leave a stuck file operation
        (a hung disk) to finish on its own."""
        try:
            await asyncio.wait_for(self._run(self._unlock), timeout)
        except TimeoutError:
            logger.error("the spool thread did not answer within the shutdown timeout")
        self._executor.shutdown(wait=False)

    # -- file operations (in the spool thread) -----------------------------------------

    def _lock(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        handle = open(self.directory / f"{self._stem}.lock", "ab")  # noqa: SIM115
        try:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # no advisory locks on this platform
            pass
        except OSError:
            handle.close()
            raise ConfigurationError(
                f"the telemetry spool {self.path} is in use by another TelemetryCapture: "
                "give each capture its own spool_path"
            ) from None
        self._lock_file = handle

    def _unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _append_items(
        self, path: Path, items: Sequence[Item | Half], versions: Sequence[int | None] | None
    ) -> tuple[int, str | None]:
        return self._append_lines(path, _encoded(items, versions))

    def _append_lines(self, path: Path, lines: Sequence[str]) -> tuple[int, str | None]:
        created = not path.exists()
        written, error = _append_whole(path, lines)
        if created and written:
            _sync_directory(self.directory)
        return written, error

    def _numbered(self) -> list[tuple[int, Path]]:
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.iterdir():
            match = self._pattern.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
        return sorted(found)

    def _segments(self) -> list[Path]:
        return [path for _, path in self._numbered()]

    def _rotate(self) -> Path | None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return None
        numbered = self._numbered()
        n = numbered[-1][0] + 1 if numbered else 0
        target = self.directory / f"{self._stem}.{n}.replaying.jsonl"
        os.replace(self.path, target)
        _sync_directory(self.directory)
        return target

    def _write_first(
        self, items: Sequence[Item], versions: Sequence[int | None] | None
    ) -> tuple[int, str | None]:
        lines = _encoded(items, versions)
        numbered = self._numbered()
        n = numbered[0][0] - 1 if numbered else 0
        target = self.directory / f"{self._stem}.{n}.replaying.jsonl"
        temporary = target.with_name(target.name + ".tmp")
        temporary.unlink(missing_ok=True)
        written, error = _append_whole(temporary, lines)
        if not written:
            temporary.unlink(missing_ok=True)
            return 0, error
        try:
            os.replace(temporary, target)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            return 0, str(exc)
        _sync_directory(self.directory)
        return written, error

    def _scan(self) -> tuple[int, list[dict[str, Any]]]:
        for partial in self.directory.glob(f"{self._stem}.*.replaying.jsonl.tmp"):
            partial.unlink()  # a first segment cut short by a crash, never complete
        self._rotate()
        records, pending = 0, []
        for path in self._segments():
            with open(path, encoding="utf-8", errors="replace") as handle:
                for number, line in enumerate(handle, start=1):
                    try:
                        entry = json.loads(line)
                        kind = entry["kind"]
                    except (ValueError, TypeError, KeyError):
                        logger.warning("skipped unreadable line %d of %s", number, path)
                        continue
                    if kind == "pending":
                        pending.append(entry)
                    else:
                        records += 1
        return records, pending


def _encoded(items: Sequence[Item | Half], versions: Sequence[int | None] | None) -> list[str]:
    if versions is None:
        return [encode(item) for item in items]
    return [encode(item, version) for item, version in zip(items, versions, strict=True)]


def _append_whole(path: Path, lines: Sequence[str]) -> tuple[int, str | None]:
    """Append ``lines`` with one write and an fsync; on a failure or a short write, cut
    the file back to its last whole line. How many lines are there, and the error."""
    data = [f"{line}\n".encode() for line in lines]
    created = not path.exists()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        return 0, str(exc)
    count = 0
    try:
        start = os.fstat(fd).st_size
        blob = b"".join(data)
        error: str | None = None
        try:
            written = os.write(fd, blob)
        except OSError as exc:
            written, error = 0, str(exc)
        if written < len(blob):
            error = error or f"short write ({written} of {len(blob)} bytes): disk full?"
        end = 0
        for line in data:  # the whole lines among what was written
            if end + len(line) > written:
                break
            end += len(line)
            count += 1
        try:
            if end < written or error is not None:
                os.ftruncate(fd, start + end)
            if count:
                os.fsync(fd)
        except OSError as exc:  # not durable: as if not written
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            return 0, str(exc)
        return count, error
    finally:
        os.close(fd)
        if created and not count:  # no empty file left behind by a failed first append
            path.unlink(missing_ok=True)


def _open_text(path: Path) -> IO[str]:
    return open(path, encoding="utf-8", errors="replace")


def _read_lines(handle: IO[str], size: int) -> list[str]:
    lines = []
    for line in handle:
        if line.strip():
            lines.append(line)
        if len(lines) >= size:
            break
    return lines


def _sync_directory(directory: Path) -> None:
    """Make a create or rename durable (where directories can be fsync'd)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
