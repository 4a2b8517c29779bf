"""Partial participation: which clients take part in a round.

Federated research runs many clients and lets a few take part in each round. The sample is
drawn from the run's seed and the round alone (not from any global generator), so a resumed run
and a run on another runtime draw the same clients, and drawing does not disturb the streams
training uses. Setup (round 0) reaches every client: each builds its state there.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

import numpy as np


def participants(
    client_ids: Sequence[int], per_round: int | None, seed: int, round_idx: int
) -> list[int]:
    """The clients of `client_ids` taking part in round `round_idx`, sorted.

    All of them in round 0 or when `per_round` is None or not smaller than their number;
    otherwise `per_round` of them drawn uniformly without replacement.
    """
    ids = sorted(client_ids)
    if round_idx == 0 or per_round is None or per_round >= len(ids):
        return ids
    rng = np.random.default_rng([seed, round_idx])
    chosen = rng.choice(len(ids), size=per_round, replace=False)
    return sorted(ids[int(k)] for k in chosen)


def taking_part(available: Iterable[int], asked: Collection[int] | None) -> list[int]:
    """The clients of `available` (those a runtime still reaches) that were `asked` to take
    part, sorted; all of them when `asked` is None."""
    return sorted(c for c in available if asked is None or c in asked)
