"""Which candidates a filter picks: scoring rule, threshold, budget and the round-1 choice.

Pure functions over arrays, so each rule can be checked by hand. Index arrays returned here are
positions in the caller's candidate list, ordered best first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from lada.method.rewards import minmax


def scores_from_outputs(
    exploit: np.ndarray, explore: np.ndarray | None, exploration_weight: float
) -> np.ndarray:
    """s = minmax(f1 + w * f2) over the candidates (f1 alone when `explore` is None).

    When all raw values are equal (a single candidate, or identical features) no candidate is
    worse than another, so every one scores 1 and passes any threshold.
    """
    raw = np.asarray(exploit, dtype=np.float64)
    if explore is not None:
        raw = raw + exploration_weight * np.asarray(explore, dtype=np.float64)
    if raw.size and raw.max() - raw.min() <= 0.0:
        return np.ones_like(raw)
    return minmax(raw)


def threshold_select(scores: np.ndarray, threshold: float, budget: int | None) -> np.ndarray:
    """Indices with score > threshold, best first, at most `budget` of them.

    Ties keep candidate order (stable sort), so the result never depends on a random draw.
    """
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    passing = order[scores[order] > threshold]
    return passing if budget is None else passing[:budget]


def round1_count(n_candidates: int, budget: int | None, fraction: float) -> int:
    """How many items the bootstrap takes: the budget, else a fraction (at least one)."""
    if n_candidates == 0:
        return 0
    wanted = budget if budget is not None else math.ceil(fraction * n_candidates)
    return max(1, min(wanted, n_candidates))


def random_select(n_candidates: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` distinct indices uniformly at random."""
    count = min(count, n_candidates)
    return rng.choice(n_candidates, size=count, replace=False).astype(np.int64)


def nearest_clusters_select(
    points: np.ndarray,
    labels: np.ndarray,
    centers: np.ndarray,
    target: np.ndarray,
    count: int,
) -> np.ndarray:
    """Whole clusters in order of centre distance to `target`, until `count` items are taken.

    The last cluster may be taken in part: its items nearest to `target` first. `points`,
    `centers` and `target` share one space (the standardised embedding space).
    """
    center_distance = ((centers - target[None, :]) ** 2).sum(1)
    point_distance = ((points - target[None, :]) ** 2).sum(1)
    chosen: list[np.ndarray] = []
    taken = 0
    for cluster in np.argsort(center_distance, kind="stable"):
        if taken >= count:
            break
        members = np.flatnonzero(labels == cluster)
        members = members[np.argsort(point_distance[members], kind="stable")]
        members = members[: count - taken]
        chosen.append(members)
        taken += len(members)
    return np.concatenate(chosen).astype(np.int64) if chosen else np.zeros(0, dtype=np.int64)


def proportional_quota(sizes: np.ndarray, total: int) -> np.ndarray:
    """Split `total` across groups in proportion to `sizes` (largest remainder method)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if sizes.sum() == 0:
        return np.zeros_like(sizes)
    exact = sizes * (total / sizes.sum())
    quota = np.minimum(np.floor(exact).astype(np.int64), sizes)
    remainder = exact - quota
    for group in np.argsort(-remainder, kind="stable"):
        if quota.sum() >= total:
            break
        if quota[group] < sizes[group]:
            quota[group] += 1
    return quota


def fraction_per_cluster_select(
    labels: np.ndarray,
    fraction: float,
    budget: int | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """A random `fraction` of every cluster (at least one item each); scaled down to `budget`."""
    clusters, sizes = np.unique(labels, return_counts=True)
    quota = np.maximum(1, np.ceil(fraction * sizes).astype(np.int64))
    if budget is not None and quota.sum() > budget:
        quota = proportional_quota(sizes, budget)
    chosen = [
        rng.choice(np.flatnonzero(labels == cluster), size=int(k), replace=False)
        for cluster, k in zip(clusters, quota, strict=True)
        if k > 0
    ]
    return np.concatenate(chosen).astype(np.int64) if chosen else np.zeros(0, dtype=np.int64)


class MatchCountError(LookupError):
    """`LadaConfig.match_counts` has no count for a pair and round that is selecting."""


def matched_count(counts: Mapping[str, Sequence[int]], pair: str, round_idx: int) -> int:
    """The count a 'lada' run took on `pair` in round `round_idx` (rounds count from 1).

    A count-matched arm must not guess: a pair or round without an entry is an error that names
    both, since taking some other number would make the comparison unequal without a sign.
    """
    if pair not in counts:
        known = ", ".join(sorted(counts)) or "none"
        raise MatchCountError(
            f"match_counts: no counts for pair {pair!r} (round {round_idx}); it has: {known}"
        )
    per_round = counts[pair]
    if not 1 <= round_idx <= len(per_round):
        raise MatchCountError(
            f"match_counts: no count for pair {pair!r} in round {round_idx}; it lists rounds "
            f"1 to {len(per_round)}"
        )
    return int(per_round[round_idx - 1])


def top_count(scores: np.ndarray, count: int) -> np.ndarray:
    """Indices of the `count` highest scores, best first; ties keep candidate order.

    A non-finite score (a loss that overflowed) ranks below every finite one, so such an item is
    taken only when the count leaves no finite alternative.
    """
    scores = np.asarray(scores, dtype=np.float64)
    ranked = np.where(np.isfinite(scores), scores, -np.inf)
    order = np.argsort(-ranked, kind="stable")
    return order[: max(0, min(count, len(order)))].astype(np.int64)


def subset_select(eligible: np.ndarray, count: int | None, rng: np.random.Generator) -> np.ndarray:
    """Positions where `eligible` holds: all of them in order, or a random `count` of them.

    `count=None` takes every eligible item; a count at or above their number takes them all,
    so the result may be shorter than `count`.
    """
    positions = np.flatnonzero(np.asarray(eligible, dtype=bool)).astype(np.int64)
    if count is None or count >= len(positions):
        return positions
    return positions[random_select(len(positions), count, rng)]
