"""A Flower client's own state between messages and across a resumed run.

What a client keeps (`SavedClient`): its party (SLM, filter, reward memory, optimizer, host
state), the states of the global generators its steps draw from, and the round of the last
message it answered. Flower may run each message in a fresh process (deployment) or in any of
several workers (simulation), so this lives on the client's disk, in a folder per run key
(`<state-dir>/run-<key>/client-<id>/`): the key comes from the server in the hello and stays the
same across the Flower runs that continue one experiment run, whereas Flower's run id changes
with every `flwr run`. `party.pt` is rewritten atomically after every step.

When the first message of a later round arrives, the state as it stood is the state at the end of
every round since its last step; it is kept as `rounds/round-NNNN.pt` for each of them (hard
links to one file), the newest `keep` rounds only. A resumed run re-attaches each client to the
round its server checkpoint ends with (`reattach`), so a server that died mid-round continues
from the previous complete round. `Context.state`, which Flower keeps per node and run, holds a
step counter: a worker that still has the state in memory at the same counter reuses it; any
other worker reloads it from disk. Nothing here is sent anywhere.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from flwr.app import ConfigRecord, Context

from lada.federation.records import record_int
from lada.hosts.base import ClientParty
from lada.hosts.payloads import PayloadError
from lada.models.presets import cache_dir

STATE_RECORD = "lada"
_ROUND = re.compile(r"^round-(\d+)\.pt$")
#: Client states a process keeps in memory, newest last. One: a simulation actor serves its
#: clients in turn, so an older one would rarely be asked for again before it changed, and
#: memory stays bounded by the actors, not by the clients (the rest wait on disk).
CACHED_STATES = 1
_CACHE: dict[str, tuple[int, SavedClient]] = {}


class StateRoundError(PayloadError):
    """The client holds no state as of the round a resumed server continues from."""


@dataclass
class SavedClient:
    """One client's state after its last step."""

    party: ClientParty
    #: Round of the last message answered (-1: none yet, just built by the hello).
    round_idx: int = -1
    #: States of the global generators (Python, numpy, torch) after its last step.
    rng: dict[str, Any] = field(default_factory=dict)


def _remember(key: str, step: int, saved: SavedClient) -> None:
    _CACHE.pop(key, None)
    _CACHE[key] = (step, saved)
    while len(_CACHE) > CACHED_STATES:
        del _CACHE[next(iter(_CACHE))]


#: Environment variable that moves every client state of this machine (a `state-dir` in the node
#: config still wins). `lada run --runtime flower-sim` sets it to the run folder's `client-state/`.
STATE_DIR_ENV = "LADA_CLIENT_STATE_DIR"


def default_state_base() -> Path:
    """Where a client keeps its state when its node config names no `state-dir`: the
    `LADA_CLIENT_STATE_DIR` of its process, else the model cache's `flower-clients/`."""
    configured = os.environ.get(STATE_DIR_ENV)
    return Path(configured) if configured else cache_dir() / "flower-clients"


def _atomic_save(obj: object, path: Path) -> None:
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as handle:
        torch.save(obj, handle)
    os.replace(partial, path)


class ClientStateStore:
    """Load and save one client's state across the messages of one (possibly resumed) run."""

    def __init__(self, context: Context, client_id: int, run_key: str | None = None) -> None:
        """`run_key`: the run's key from the hello; None reads the one the hello left in
        `Context.state`."""
        self.context = context
        self.client_id = client_id
        key = run_key if run_key is not None else self.recall("run_key")
        if not key:
            raise PayloadError("no run key yet: the hello step has not reached this client")
        if run_key is not None:
            self.remember("run_key", run_key)
        configured = context.node_config.get("state-dir")
        base = Path(str(configured)) if configured else default_state_base()
        self.folder = base / f"run-{key}" / f"client-{client_id}"
        self.key = f"{key}/{client_id}"

    # -------------------------------------------------------------- counters
    def _record(self) -> ConfigRecord:
        if STATE_RECORD not in self.context.state.config_records:
            self.context.state[STATE_RECORD] = ConfigRecord({"step": 0})
        return self.context.state.config_records[STATE_RECORD]

    @property
    def step(self) -> int:
        return record_int(self._record()["step"])

    def remember(self, key: str, value: str) -> None:
        """A small string kept by Flower with the node (e.g. the experiment config)."""
        self._record()[key] = value

    def recall(self, key: str) -> Any:
        return self._record().get(key)

    # ----------------------------------------------------------------- state
    @property
    def path(self) -> Path:
        return self.folder / "party.pt"

    @property
    def rounds_dir(self) -> Path:
        return self.folder / "rounds"

    def round_path(self, round_idx: int) -> Path:
        return self.rounds_dir / f"round-{round_idx:04d}.pt"

    def kept_rounds(self) -> list[int]:
        """Rounds whose end-of-round state is kept, newest first."""
        if not self.rounds_dir.is_dir():
            return []
        found = (_ROUND.match(p.name) for p in self.rounds_dir.iterdir())
        return sorted((int(m.group(1)) for m in found if m), reverse=True)

    def load(self) -> SavedClient:
        cached = _CACHE.get(self.key)
        if cached is not None and cached[0] == self.step:
            return cached[1]
        if not self.path.exists():
            raise FileNotFoundError(
                f"{self.path}: no state for client {self.client_id}; the run's hello has not "
                "reached this client"
            )
        saved: SavedClient = torch.load(self.path, weights_only=False)
        _remember(self.key, self.step, saved)
        return saved

    def save(self, saved: SavedClient) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        _atomic_save(saved, self.path)
        record = self._record()
        record["step"] = self.step + 1
        _remember(self.key, self.step, saved)

    def start(self, saved: SavedClient) -> None:
        """A fresh run: drop whatever an earlier run with this key left, keep `saved`."""
        shutil.rmtree(self.folder, ignore_errors=True)
        self.save(saved)

    # ---------------------------------------------------------------- rounds
    def close_rounds(self, saved: SavedClient, next_round: int, keep: int) -> None:
        """Before the first step of `next_round`: keep the current state as the state at the
        end of every round from its last step's round to `next_round - 1`, then drop all but
        the newest `keep` rounds."""
        first = max(saved.round_idx, 0)
        if next_round <= first or not self.path.exists():
            return
        self.rounds_dir.mkdir(parents=True, exist_ok=True)
        for round_idx in range(first, next_round):
            target = self.round_path(round_idx)
            target.unlink(missing_ok=True)
            os.link(self.path, target)
        for old in self.kept_rounds()[keep:]:
            self.round_path(old).unlink(missing_ok=True)

    def reattach(self, round_idx: int) -> SavedClient:
        """The state as of the end of `round_idx`, made current; the kept rounds after it (an
        abandoned continuation) are dropped. `StateRoundError` when there is none."""
        kept = self.kept_rounds()
        current: SavedClient | None = None
        if round_idx in kept:
            source = self.round_path(round_idx)
        elif self.path.exists():
            current = torch.load(self.path, weights_only=False)
            if current.round_idx > round_idx:
                raise StateRoundError(
                    f"client {self.client_id}: the server resumes after round {round_idx}, but "
                    f"this client's state is as of round {current.round_idx} and it keeps the "
                    f"states of rounds {sorted(kept) or 'none'} ({self.folder}); refused rather "
                    "than mixing rounds"
                )
            source = self.path
        else:
            raise StateRoundError(
                f"client {self.client_id}: the server resumes after round {round_idx}, but this "
                f"client has no state for the run ({self.folder} is missing or empty)"
            )
        if source != self.path:
            partial = self.path.with_name("party.pt.partial")
            partial.unlink(missing_ok=True)
            os.link(source, partial)
            os.replace(partial, self.path)
        for later in kept:
            if later > round_idx:
                self.round_path(later).unlink(missing_ok=True)
        saved: SavedClient = current or torch.load(self.path, weights_only=False)
        _remember(self.key, self.step, saved)
        return saved
