"""The journal's fsyncs: in batches, in a thread of their own, never on the caller's path.

With ``durability="fsync"`` a background task fsyncs what the journal wrote every
``fsync_interval`` seconds (and the directory, for new segment names); a descriptor the
journal is done with is fsync'd before it is closed. ``close()`` fsyncs everything once in
either mode, so a clean shutdown survives a crash of the machine too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

__all__ = ["Syncer"]

logger = logging.getLogger("orb_learning.telemetry")


class Syncer:
    """fsyncs for one journal; ``active()`` gives the descriptor being appended to."""

    def __init__(
        self, directory: Path, active: Callable[[], int | None], *, every: float | None
    ) -> None:
        self.directory = directory
        self.active = active
        self.every = every  # None: only at close (durability="write")
        self.dirty = False  # written since the last fsync
        self._retired: list[int] = []  # to fsync, then close
        self._task: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="orb-journal")

    def start(self) -> None:
        if self.every is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._sync_every(self.every), name="orb-telemetry-journal-fsync"
            )

    def retire(self, fd: int) -> None:
        """The journal is done with ``fd``: closed now, or after its fsync (fsync mode)."""
        if self.every is not None:
            self._retired.append(fd)
        else:
            with contextlib.suppress(OSError):
                os.close(fd)

    async def _sync_every(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            if self.dirty or self._retired:
                self.dirty = False
                await self._run([])

    async def _run(self, paths: list[Path]) -> None:
        fd = self.active()
        active = [] if fd is None else [fd]
        retired, self._retired = self._retired, []
        await asyncio.get_running_loop().run_in_executor(
            self._thread, _fsync, active + retired, len(active), paths, self.directory
        )

    async def close(self, paths: list[Path], timeout: float) -> None:
        """Stop the task; fsync the active descriptor, the retired ones and ``paths``
        (within ``timeout``: a stuck disk is left to finish on its own)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await asyncio.wait_for(self._run(paths), max(0.0, timeout))
        except (TimeoutError, OSError) as exc:
            logger.warning("the journal could not be fsync'd at shutdown: %r", exc)
        self._thread.shutdown(wait=False)


def _fsync(fds: list[int], keep: int, paths: list[Path], directory: Path) -> None:
    """fsync each descriptor, closing those after the first ``keep`` (retired), and each
    path; then the directory, so that new segment names survive too."""
    for n, fd in enumerate(fds):
        with contextlib.suppress(OSError):
            os.fsync(fd)
        if n >= keep:
            with contextlib.suppress(OSError):
                os.close(fd)
    for path in [*paths, directory]:
        with contextlib.suppress(OSError):
            descriptor = os.open(path, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
