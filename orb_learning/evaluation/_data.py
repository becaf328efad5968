"""Outcome data: tasks both tiers attempted, with both outcomes known (RouteLLM's format:
``benchmark, task_type, prompt, small_correct, large_correct``), and the prices that turn a
prompt into a cost."""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ArgumentError

COLUMNS = ("benchmark", "task_type", "prompt", "small_correct", "large_correct")
SMALL_PRICE = 0.60
LARGE_PRICE = 30.00
"""US dollars per million prompt tokens (the data's README)."""
CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class Tasks:
    """The tasks of one file, as columns."""

    benchmark: list[str]
    task_type: list[str]
    prompt: list[str]
    small: np.ndarray
    """1 where the small tier succeeded."""
    large: np.ndarray

    def __len__(self) -> int:
        return len(self.prompt)

    def cost(self, tier: str) -> np.ndarray:
        """Each task's cost on ``tier`` in USD: len(prompt) / 4 tokens at the tier's price."""
        price = SMALL_PRICE if tier == "small" else LARGE_PRICE
        tokens = np.array([len(p) for p in self.prompt], dtype=np.float64) / CHARS_PER_TOKEN
        return tokens * price / 1e6

    def outcome(self, tier: str) -> np.ndarray:
        return self.small if tier == "small" else self.large

    def take(self, index: np.ndarray) -> Tasks:
        picked = [int(i) for i in index]
        return Tasks(
            benchmark=[self.benchmark[i] for i in picked],
            task_type=[self.task_type[i] for i in picked],
            prompt=[self.prompt[i] for i in picked],
            small=self.small[index],
            large=self.large[index],
        )


def load(path: Path, *, limit: int | None = None, seed: int = 0) -> Tasks:
    """The file's tasks (``limit``: that many, drawn at random with ``seed``)."""
    csv.field_size_limit(sys.maxsize)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ArgumentError(f"{path}: missing columns {missing} (need {list(COLUMNS)})")
            rows = [_checked(row, path, line) for line, row in enumerate(reader, start=2)]
    except OSError as exc:
        raise ArgumentError(f"{path}: {exc.strerror or exc}") from None
    if len(rows) < 10:
        raise ArgumentError(f"{path}: {len(rows)} tasks; an evaluation needs at least 10")
    tasks = Tasks(
        benchmark=[r[0] for r in rows],
        task_type=[r[1] for r in rows],
        prompt=[r[2] for r in rows],
        small=np.array([r[3] for r in rows], dtype=np.int64),
        large=np.array([r[4] for r in rows], dtype=np.int64),
    )
    if limit is not None and limit < len(tasks):
        return tasks.take(np.sort(np.random.default_rng(seed).permutation(len(tasks))[:limit]))
    return tasks


def _checked(row: dict[str, str], path: Path, line: int) -> tuple[str, str, str, int, int]:
    values = []
    for name in ("small_correct", "large_correct"):
        value = (row.get(name) or "").strip()
        if value not in ("0", "1"):
            raise ArgumentError(f"{path}:{line}: {name} must be 0 or 1, got {value!r}")
        values.append(int(value))
    prompt, task_type = row.get("prompt") or "", (row.get("task_type") or "").strip()
    if not prompt.strip() or not task_type:
        raise ArgumentError(f"{path}:{line}: empty prompt or task_type")
    return (row["benchmark"].strip() or "default", task_type, prompt, values[0], values[1])
