"""Reading a finished run's `selections.jsonl`: what each directed pair took, round by round.

A count-matched comparison runs the 'lada' arm first and then the other arms ('random',
'oracle', 'rho_loss') at the item counts it took (`LadaConfig.match_counts`), so that every arm
trains on as many items as LaDa did, pair by pair and round by round.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SELECTIONS_FILE = "selections.jsonl"


class SelectionsError(ValueError):
    """A run's selections file is missing or does not give one count per pair and round."""


def read_selections(run_dir: Path | str) -> list[dict[str, Any]]:
    """The records of a run's selections file, in file order (blank lines skipped)."""
    path = Path(run_dir) / SELECTIONS_FILE
    if not path.is_file():
        raise SelectionsError(f"{path}: no such file (is {run_dir} a finished run folder?)")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise SelectionsError(f"{path}:{number}: not a JSON record ({error})") from error
    return records


def counts_from_run(run_dir: Path | str) -> dict[str, list[int]]:
    """Items each directed pair took in rounds 1, 2, ... of a run (the `match_counts` format).

    A pair's list runs to the last round it selected in. A round before that in which the pair
    made no selection (its host offered it nothing) counts 0: that is what the pair took then.
    Two records for one pair and round, or a record outside rounds 1, 2, ..., are errors, since
    no single count could be matched.
    """
    path = Path(run_dir) / SELECTIONS_FILE
    taken: dict[str, dict[int, int]] = {}
    for k, record in enumerate(read_selections(run_dir), start=1):
        pair, round_idx, item_ids = _fields(record, path, k)
        rounds = taken.setdefault(pair, {})
        if round_idx in rounds:
            raise SelectionsError(
                f"{path}: pair {pair!r} has two records for round {round_idx} (record {k})"
            )
        rounds[round_idx] = len(item_ids)
    return {
        pair: [rounds.get(r, 0) for r in range(1, max(rounds) + 1)]
        for pair, rounds in sorted(taken.items())
    }


def _fields(record: Any, path: Path, k: int) -> tuple[str, int, list[Any]]:
    """(pair, round, item ids) of one record, checked."""
    if not isinstance(record, dict):
        raise SelectionsError(f"{path}: record {k} is not an object")
    missing = [key for key in ("round", "filter", "item_ids") if key not in record]
    if missing:
        raise SelectionsError(f"{path}: record {k} lacks {missing}")
    pair, round_idx, item_ids = record["filter"], record["round"], record["item_ids"]
    if not isinstance(pair, str) or not pair:
        raise SelectionsError(f"{path}: record {k}: 'filter' must be a pair name, got {pair!r}")
    if isinstance(round_idx, bool) or not isinstance(round_idx, int) or round_idx < 1:
        raise SelectionsError(
            f"{path}: record {k} ({pair}): 'round' must be 1, 2, ..., got {round_idx!r}"
        )
    if not isinstance(item_ids, list):
        raise SelectionsError(f"{path}: record {k} ({pair}): 'item_ids' must be a list")
    return pair, round_idx, item_ids
