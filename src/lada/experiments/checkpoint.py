"""Round checkpoints: everything a run needs to continue exactly where it stopped.

A checkpoint holds the parties (models or adapters with their optimizer moments, LaDa filters
with their reward memories and generators, each host's state), the metrics so far and the global RNG
states, pickled with `torch.save`. It is written to a temporary file in the same folder, flushed
to disk and renamed over its final name, so a crash mid-write leaves the previous checkpoint
intact; on resume an unreadable newest checkpoint is skipped for the one before it.
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^round-(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """No usable checkpoint in a run folder."""


@dataclass
class Checkpoint:
    round_idx: int
    history: list[dict[str, Any]]
    state: dict[str, Any]
    rng: dict[str, Any]
    path: Path


def rng_state() -> dict[str, Any]:
    """The global generators a run may draw from (Python, numpy, torch CPU and CUDA)."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_path(run_dir: Path, round_idx: int) -> Path:
    return run_dir / CHECKPOINT_DIR / f"round-{round_idx:04d}.pt"


def save_checkpoint(
    run_dir: Path,
    round_idx: int,
    history: list[dict[str, Any]],
    state: dict[str, Any],
    *,
    keep: int,
) -> Path:
    """Write round `round_idx` atomically, then drop all but the newest `keep` checkpoints."""
    final = checkpoint_path(run_dir, round_idx)
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(final.name + ".partial")
    payload = {"round": round_idx, "history": history, "state": state, "rng": rng_state()}
    with partial.open("wb") as handle:
        torch.save(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, final)
    for old in list_checkpoints(run_dir)[keep:]:
        old.unlink(missing_ok=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoint files of a run, newest round first."""
    folder = run_dir / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def load_latest(run_dir: Path, warn: Any = print) -> Checkpoint:
    """The newest checkpoint that loads; unreadable ones are reported through `warn` and skipped."""
    candidates = list_checkpoints(run_dir)
    if not candidates:
        raise CheckpointError(f"{run_dir}: no checkpoints in {CHECKPOINT_DIR}/ to resume from")
    for path in candidates:
        try:
            data = torch.load(path, weights_only=False)
            return Checkpoint(int(data["round"]), data["history"], data["state"], data["rng"], path)
        except Exception as err:  # a torn or corrupted file: any unpickling error
            warn(f"{path}: unreadable checkpoint ({type(err).__name__}: {err}); trying older")
    names = [p.name for p in candidates]
    raise CheckpointError(f"{run_dir}: every checkpoint is unreadable: {names}")
