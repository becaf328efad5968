"""How history becomes a posterior per option (docs/decisions/0010-route-estimates.md).

An option (tier, pool) starts from its tier's prior for the task (:mod:`._route_prior`:
the type's shrunk rate, moved by the covariates). The task's nearest past executions then
shift it: each neighbour's residual (its outcome minus its own prior) is averaged with
weights ``max(similarity, 0) ** sharpness`` and shrunk by ``strength`` pseudo-executions:
``p = p0 + sum(w r) / (sum(w) + strength)``. Whether each option uses its own neighbours
or all of them (the neighbours then say how hard the task is, not which option suits it),
in which blend (``own_share``), and which (sharpness, strength) pairs count with which
weights, :mod:`._route_fit` decides on the history by leave-one-out; the estimate averages
over them. Costs, durations and qualities are
similarity-weighted means of the option's neighbours, shrunk toward the tier's means at
the type.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ._route_prior import Prior, TierStats

__all__ = ["Config", "Model", "Neighbour", "Posterior", "estimate"]

INTERVAL = 0.90
CLIP = 1e-3
MIN_EFFECTIVE = 2.0
"""The posterior's effective size is never below two executions (a Beta(1, 1)'s)."""


@dataclass(frozen=True)
class Config:
    """One (sharpness, strength, own share) of the fit's grid and its weight in the average."""

    sharpness: float
    strength: float
    own_share: float = 1.0
    """How much of the shift comes from the option's own neighbours (the rest from all of
    them, whichever option they ran)."""
    weight: float = 1.0


@dataclass(frozen=True)
class Model:
    """What the fit decided: the prior and the weighted configurations."""

    prior: Prior
    configs: tuple[Config, ...] = (Config(4.0, 8.0),)
    sample_rows: int = 0
    """History rows the fit predicted (0: too few, the defaults)."""


@dataclass(frozen=True)
class Neighbour:
    """One of the task's nearest past executions."""

    model_tier: str
    pool_type: str
    task_type: str | None
    success: bool
    similarity: float
    length: int
    complexity: float | None
    cost: float = 0.0
    duration: float = 0.0
    quality: float | None = None


@dataclass(frozen=True)
class Posterior:
    """An option's estimates: Beta(alpha, beta) over its success, and shrunk means."""

    alpha: float
    beta: float
    cost: float | None
    duration: float | None
    quality: float | None
    neighbours: int = 0
    weight: float = 0.0
    best_similarity: float | None = None
    type_executions: int = 0
    tier_executions: int = 0
    low: float = field(init=False)
    high: float = field(init=False)

    def __post_init__(self) -> None:
        from scipy.special import betaincinv

        tail = (1.0 - INTERVAL) / 2
        low, high = (float(betaincinv(self.alpha, self.beta, q)) for q in (tail, 1 - tail))
        object.__setattr__(self, "low", min(low, self.mean))  # rounding at the extremes
        object.__setattr__(self, "high", max(high, self.mean))

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)


def residuals(neighbours: Sequence[Neighbour], prior: Prior) -> np.ndarray:
    """Each neighbour's outcome minus its own prior."""
    return np.array(
        [
            float(n.success) - prior.p0(n.model_tier, n.task_type, n.length, n.complexity)
            for n in neighbours
        ]
    )


def estimate(
    candidates: Sequence[tuple[str, str]],
    neighbours: Sequence[Neighbour],
    cells: Mapping[tuple[str, str | None], TierStats],
    task: tuple[str | None, int, float | None],
    model: Model,
) -> dict[tuple[str, str], Posterior]:
    """Each candidate's posterior for the task ``(task_type, description length,
    complexity)``; ``cells``: per (tier, task type) over all repos."""
    configs = _Configs.of(model.configs)
    r = residuals(neighbours, model.prior)
    similarity = np.maximum(np.array([n.similarity for n in neighbours], dtype=float), 0.0)
    powers = similarity[None, :] ** configs.sharpness[:, None]  # sharpness x neighbours
    every = _Sums.of(powers, r, np.ones(len(neighbours), dtype=bool))
    options = [(n.model_tier, n.pool_type) for n in neighbours]
    out = {}
    for candidate in candidates:
        own = np.array([option == candidate for option in options], dtype=bool)
        mine = [n for n, is_mine in zip(neighbours, own, strict=True) if is_mine]
        sums = _Sums.of(powers, r, own)
        out[candidate] = _posterior(
            candidate, mine, own, powers, sums, every, cells, task, model, configs
        )
    return out


@dataclass(frozen=True)
class _Configs:
    """The model's configurations as arrays (one entry per configuration)."""

    sharpness: np.ndarray
    """The distinct sharpness values; ``index`` maps each configuration to one."""
    index: np.ndarray
    strength: np.ndarray
    own_share: np.ndarray
    weight: np.ndarray

    @classmethod
    def of(cls, configs: Sequence[Config]) -> _Configs:
        values = sorted({c.sharpness for c in configs})
        return cls(
            sharpness=np.array(values),
            index=np.array([values.index(c.sharpness) for c in configs]),
            strength=np.array([c.strength for c in configs]),
            own_share=np.array([c.own_share for c in configs]),
            weight=np.array([c.weight for c in configs]),
        )


@dataclass(frozen=True)
class _Sums:
    """Per sharpness: the weights' sum, the weighted residuals' sum, the squares' sum."""

    w: np.ndarray
    wr: np.ndarray
    ww: np.ndarray

    @classmethod
    def of(cls, powers: np.ndarray, r: np.ndarray, mask: np.ndarray) -> _Sums:
        if not len(r):
            zero = np.zeros(powers.shape[0])
            return cls(zero, zero, zero)
        w = powers[:, mask]
        return cls(w.sum(axis=1), (w * r[mask]).sum(axis=1), (w * w).sum(axis=1))

    def shift(self, c: _Configs) -> tuple[np.ndarray, np.ndarray]:
        """Per configuration: the shift sum(w r) / (sum(w) + strength), and what the
        neighbours add to the effective executions: their Kish number ((sum w)^2 /
        sum w^2, whatever the weights' scale) times their share of the estimate."""
        w, wr, ww = self.w[c.index], self.wr[c.index], self.ww[c.index]
        with np.errstate(invalid="ignore", divide="ignore"):
            kish = np.where(ww > 0, w * w / ww, 0.0)
        return wr / (w + c.strength), w / (w + c.strength) * kish


def _posterior(
    candidate: tuple[str, str],
    mine: Sequence[Neighbour],
    own: np.ndarray,
    powers: np.ndarray,
    sums: _Sums,
    every: _Sums,
    cells: Mapping[tuple[str, str | None], TierStats],
    task: tuple[str | None, int, float | None],
    model: Model,
    configs: _Configs,
) -> Posterior:
    tier = candidate[0]
    task_type, length, complexity = task
    prior = model.prior
    p0 = prior.p0(tier, task_type, length, complexity)
    (own_shift, own_count), (all_shift, all_count) = sums.shift(configs), every.shift(configs)
    share = configs.own_share
    p = np.clip(p0 + share * own_shift + (1 - share) * all_shift, CLIP, 1 - CLIP)
    mean = float(np.sum(configs.weight * p))
    limit = prior.count(tier, task_type)
    counts = np.minimum(configs.strength, limit) + share * own_count + (1 - share) * all_count
    effective = max(float(np.sum(configs.weight * counts)), MIN_EFFECTIVE)
    top = int(np.argmax(configs.weight))
    weights = powers[configs.index[top], own] if own.size else np.zeros(0)
    strength = float(configs.strength[top])
    cost, duration, quality = _means(mine, weights, cells, tier, task_type, prior, strength)
    overall = _overall(cells, tier)
    cell = cells.get((tier, task_type)) if task_type is not None else None
    return Posterior(
        alpha=mean * effective,
        beta=(1 - mean) * effective,
        cost=cost,
        duration=duration,
        quality=quality,
        neighbours=len(mine),
        weight=float(np.sum(weights)),
        best_similarity=max((n.similarity for n in mine), default=None),
        type_executions=cell.executions if cell else 0,
        tier_executions=overall.executions,
    )


def _overall(cells: Mapping[tuple[str, str | None], TierStats], tier: str) -> TierStats:
    total = TierStats()
    for (t, _), s in cells.items():
        if t == tier:
            total.executions += s.executions
            total.successes += s.successes
            total.cost += s.cost
            total.duration += s.duration
            total.quality += s.quality
            total.quality_count += s.quality_count
    return total


def _shrunk(total: float, count: float, prior: float | None, strength: float) -> float | None:
    if prior is None:
        return total / count if count > 0 else None
    return (total + strength * prior) / (count + strength)


def _means(
    mine: Sequence[Neighbour],
    weights: np.ndarray,
    cells: Mapping[tuple[str, str | None], TierStats],
    tier: str,
    task_type: str | None,
    prior: Prior,
    strength: float,
) -> tuple[float | None, float | None, float | None]:
    """Cost, duration and quality: the tier's means, at the type, then the neighbours'."""
    overall = _overall(cells, tier)
    levels: list[float | None] = [
        _shrunk(overall.cost, overall.executions, None, 0),
        _shrunk(overall.duration, overall.executions, None, 0),
        _shrunk(overall.quality, overall.quality_count, None, 0),
    ]
    cell = cells.get((tier, task_type)) if task_type is not None else None
    if cell is not None and cell.executions > 0:
        a = prior.strengths.get(tier, 16.0)
        levels = [
            _shrunk(cell.cost, cell.executions, levels[0], a),
            _shrunk(cell.duration, cell.executions, levels[1], a),
            _shrunk(cell.quality, cell.quality_count, levels[2], a),
        ]
    w = [float(x) for x in weights]
    rated = [(n.quality, x) for n, x in zip(mine, w, strict=True) if n.quality is not None]
    return (
        _shrunk(sum(x * n.cost for n, x in zip(mine, w, strict=True)), sum(w), levels[0], strength),
        _shrunk(
            sum(x * n.duration for n, x in zip(mine, w, strict=True)), sum(w), levels[1], strength
        ),
        _shrunk(sum(x * q for q, x in rated), sum(x for _, x in rated), levels[2], strength),
    )
