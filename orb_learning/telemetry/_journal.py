"""The write-ahead journal: a captured event is on disk before its capture call returns.

A capture call appends its event as one JSON line, with one ``os.write`` to an ``O_APPEND``
descriptor, before it returns: once the call has returned, a crash of the process (a kill,
``os._exit``, an OOM kill) cannot lose the event, since the kernel holds it. A crash of the
machine (power loss, kernel panic) can lose what the kernel had not written back yet: by
default Linux writes dirty pages back after ``vm.dirty_expire_centisecs`` (30 s) and its
flusher wakes every ``vm.dirty_writeback_centisecs`` (5 s), so up to about the last 35 s
of events. With ``durability="fsync"`` a background task fsyncs the journal every
``fsync_interval`` seconds (never on the caller's path): then a machine crash loses at most
that interval's events (plus an fsync's duration).

Files, in the spool's directory: ``<stem>.journal.<first seq>.jsonl`` (mode 0600: events
as captured, before any redaction), one segment per start or rotation; the newest is
appended to. Lines:

- an event: ``{"q": seq, "e": event type, "r": epoch seconds received, "d": the event}``;
- a settle mark: ``{"s": [seq, ...]}``: those events of this segment are settled.

An event is settled once what it became is safe elsewhere: its record (or its dead letter)
stored, or appended to the record spool, or the event rejected. A segment whose events are
all settled is deleted; the marks let a restart skip the settled events of a segment that
is still needed. At a start, the leftover segments' unsettled events are replayed through
the intake, in order (see :class:`~orb_learning.telemetry._capture.TelemetryCapture`).

A write that fails (disk full, file too large) or comes up short is cut back to the
previous end with ``ftruncate``, so a line is there whole or not at all; the event is
counted in ``not_journaled``, kept in memory, and the capture call still returns at once.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ._syncer import Syncer

__all__ = ["Durability", "Journal", "Replayed"]

logger = logging.getLogger("orb_learning.telemetry")
Durability = Literal["write", "fsync"]
Replayed = tuple[int, str, dict[str, Any], float]
"""An unsettled event of a previous run: (seq, event type, event, epoch received)."""
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)


@dataclass(eq=False)
class Segment:
    """One journal file: its first seq, its size, the seqs in it not settled yet, and the
    settled ones whose marks are still to be written."""

    path: Path
    first: int
    size: int = 0
    unsettled: set[int] = field(default_factory=set)
    marks: list[int] = field(default_factory=list)


class Journal:
    """The journal segments of one capture, all written from the event loop's thread."""

    def __init__(
        self,
        directory: Path,
        stem: str,
        *,
        durability: Durability = "write",
        fsync_interval: float = 1.0,
        segment_bytes: int = 4 << 20,
        settled_rotate_bytes: int = 64 << 10,
    ) -> None:
        self.directory = directory
        self._prefix = f"{stem}.journal."
        self._pattern = re.compile(rf"^{re.escape(self._prefix)}(\d+)\.jsonl$")
        self.durability = durability
        self.fsync_interval = fsync_interval
        self.segment_bytes = segment_bytes
        self.settled_rotate_bytes = settled_rotate_bytes
        self._segments: list[Segment] = []  # by first seq; the last one is active
        self._firsts: list[int] = []
        self._fd: int | None = None  # the active segment's descriptor
        self._next = 1
        self.not_journaled = 0
        self.unreadable = 0
        self.error: str | None = None  # the last write error, until a write succeeds
        self.last_error: str | None = None  # the last write error, kept
        self._rotate_wanted = False
        self._loaded = False  # load() ran: segments may be created
        self._marks_due = False
        every = fsync_interval if durability == "fsync" else None
        self._syncer = Syncer(directory, lambda: self._fd, every=every)

    # -- start -----------------------------------------------------------------------

    def load(self) -> list[Replayed]:
        """Read the leftover segments (in a thread, before any append): their unsettled
        events, oldest first; then open a new active segment."""
        found = []
        for path in self.directory.iterdir():
            match = self._pattern.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
        events: list[Replayed] = []
        for first, path in sorted(found):
            segment = Segment(path, first)
            replayed, last = self._read(segment)
            self._next = max(self._next, first, last + 1)
            if replayed:
                segment.unsettled = {e[0] for e in replayed}
                self._add(segment)
                events += replayed
            else:
                path.unlink(missing_ok=True)
        self._loaded = True
        self._open_segment()
        return events

    def _read(self, segment: Segment) -> tuple[list[Replayed], int]:
        """The segment's unsettled events, and the highest seq it holds."""
        with open(segment.path, "rb") as handle:
            content = handle.read()
        whole = content.rfind(b"\n") + 1
        if whole < len(content):  # a machine crash's torn tail: cut it, marks go after
            logger.warning("cut a torn last line of %s", segment.path)
            os.truncate(segment.path, whole)
        segment.size = whole
        events: dict[int, Replayed] = {}
        settled: set[int] = set()
        for number, line in enumerate(content[:whole].splitlines(), start=1):
            try:
                entry = json.loads(line)
                if "s" in entry:
                    settled.update(entry["s"])
                else:
                    events[int(entry["q"])] = (
                        int(entry["q"]),
                        str(entry["e"]),
                        entry["d"],
                        float(entry["r"]),
                    )
            except (ValueError, TypeError, KeyError, AttributeError):
                self.unreadable += 1
                logger.error("skipped unreadable line %d of %s", number, segment.path)
        last = max([*events, *(q for q in settled if isinstance(q, int))], default=0)
        return [e for q, e in events.items() if q not in settled], last

    def _add(self, segment: Segment) -> None:
        self._segments.append(segment)
        self._firsts.append(segment.first)

    def _open_segment(self) -> bool:
        if self._segments and self._segments[-1].first == self._next:
            # The active segment holds no event (its first write failed): start it anew.
            if self._fd is not None:
                return False  # nothing to rotate
            self._delete(len(self._segments) - 1)
        path = self.directory / f"{self._prefix}{self._next}.jsonl"
        try:
            fd = os.open(path, _FLAGS, 0o600)
        except OSError as exc:
            self._failed(exc)
            return False
        old, self._fd = self._fd, fd
        if old is not None:
            self._close(old)
        self._add(Segment(path, self._next, size=os.fstat(fd).st_size))
        self._syncer.dirty = True  # the new name: the directory is fsync'd too
        return True

    # -- the caller's path ----------------------------------------------------------------

    def append(self, event_type: str, payload: str, received: float) -> int | None:
        """Write one event line; its seq, or None when it could not be written (counted,
        logged once per failure, never raised)."""
        fd = self._fd
        if fd is None:
            self.not_journaled += 1
            return None
        seq = self._next
        line = f'{{"q":{seq},"e":"{event_type}","r":{received!r},"d":{payload}}}\n'.encode()
        segment = self._segments[-1]
        try:
            written = os.write(fd, line)
        except OSError as exc:
            self._failed(exc, segment)
            return None
        if written != len(line):
            self._failed(OSError(f"short write ({written} of {len(line)} bytes)"), segment)
            return None
        segment.size += written
        segment.unsettled.add(seq)
        self._next = seq + 1
        self._syncer.dirty = True
        if self.error is not None:
            logger.warning("the journal is written again (%d events were not)", self.not_journaled)
            self.error = None
        if segment.size >= self.segment_bytes:
            self._rotate_wanted = True
        return seq

    def _failed(self, exc: OSError, segment: Segment | None = None) -> None:
        """Cut the file back to its last whole line; count; log the first failure."""
        self.not_journaled += segment is not None
        if segment is not None and self._fd is not None:
            try:
                os.ftruncate(self._fd, segment.size)
            except OSError:  # never append after a half line: a new segment next time
                fd, self._fd = self._fd, None
                self._close(fd)
        self._rotate_wanted = True  # a settled segment can then be deleted to make room
        if self.error is None:
            logger.error(
                "cannot write the telemetry journal in %s (%s): events are kept in memory "
                "only, so a crash now would lose them; free space there",
                self.directory,
                exc,
            )
        self.error = self.last_error = str(exc)

    # -- settling -------------------------------------------------------------------------

    def settle(self, seqs: Iterable[int | None]) -> None:
        """These events are safe elsewhere (or rejected): forget them; delete a segment
        once all of its events are settled; marks are written soon after (on the loop)."""
        for seq in seqs:
            if seq is None:
                continue
            index = bisect.bisect_right(self._firsts, seq) - 1
            if index < 0:
                continue
            segment = self._segments[index]
            if seq not in segment.unsettled:
                continue
            segment.unsettled.discard(seq)
            if segment.unsettled or index == len(self._segments) - 1:
                segment.marks.append(seq)
                self._schedule_marks()
            else:
                self._delete(index)

    def _schedule_marks(self) -> None:
        if not self._marks_due:
            self._marks_due = True
            with contextlib.suppress(RuntimeError):  # no loop: written at close
                asyncio.get_running_loop().call_soon(self.write_marks)

    def write_marks(self) -> None:
        """Rotate if due, then append the pending settle marks, one line per segment."""
        self._marks_due = False
        self.rotate_if_due()
        for segment in self._segments:
            if segment.marks:
                line = json.dumps({"s": segment.marks}, separators=(",", ":")).encode() + b"\n"
                if self._write_to(segment, line):
                    segment.marks = []

    def _write_to(self, segment: Segment, line: bytes) -> bool:
        active = segment is self._segments[-1] and self._fd is not None
        try:
            fd = self._fd if active and self._fd is not None else os.open(segment.path, _FLAGS)
        except OSError:
            return False
        try:
            if not active and os.fstat(fd).st_size != segment.size:
                os.ftruncate(fd, segment.size)  # a torn last line (see _failed)
            written = os.write(fd, line)
            if written != len(line):
                os.ftruncate(fd, segment.size)
                return False
            segment.size += written
            self._syncer.dirty = self._syncer.dirty or active
            return True
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, segment.size)
            return False
        finally:
            if not active:
                os.close(fd)

    def rotate_if_due(self) -> None:
        """A new active segment when the active one is big, or all settled and not small
        (the old one is then deleted at once), or after a failed write."""
        if not self._segments:  # none could be created at the start: try again
            if self._loaded and self._rotate_wanted and self._open_segment():
                self._rotate_wanted = False
            return
        active = self._segments[-1]
        settled = not active.unsettled and active.size >= self.settled_rotate_bytes
        if not (self._rotate_wanted or settled or active.size >= self.segment_bytes):
            return
        if active.size == 0 and self._fd is not None:
            self._rotate_wanted = False
            return
        if self._open_segment():
            self._rotate_wanted = False
            if not active.unsettled:
                self._delete(self._segments.index(active))

    def _delete(self, index: int) -> None:
        segment = self._segments.pop(index)
        del self._firsts[index]
        try:
            segment.path.unlink(missing_ok=True)
        except OSError as exc:
            logger.warning("cannot delete the settled journal segment %s: %s", segment.path, exc)

    # -- carrying forward -------------------------------------------------------------------

    def stale(self) -> dict[int, int]:
        """Segments other than the active one that still hold unsettled events: their
        first seq and how many."""
        return {s.first: len(s.unsettled) for s in self._segments[:-1] if s.unsettled}

    def segment_of(self, seq: int) -> int | None:
        index = bisect.bisect_right(self._firsts, seq) - 1
        return self._firsts[index] if index >= 0 else None

    # -- durability -------------------------------------------------------------------------

    def start(self) -> None:
        """In fsync mode, the background task that fsyncs the journal in batches."""
        self._syncer.start()

    def _close(self, fd: int) -> None:
        self._syncer.retire(fd)

    async def close(self, timeout: float) -> None:
        """Write the marks, fsync (bounded by ``timeout``: a clean stop survives a machine
        crash too), close, and delete the active segment if all of it is settled."""
        self.write_marks()
        await self._syncer.close([s.path for s in self._segments[:-1]], timeout)
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._segments and not self._segments[-1].unsettled:
            self._delete(len(self._segments) - 1)

    # -- counters ---------------------------------------------------------------------------

    @property
    def unsettled(self) -> int:
        return sum(len(s.unsettled) for s in self._segments)

    @property
    def segments(self) -> int:
        return len(self._segments)

    @property
    def size(self) -> int:
        return sum(s.size for s in self._segments)
