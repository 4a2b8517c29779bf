"""A Flower client's own state between messages: its party (SLM, filter, memory) and its config.

Flower may run each message in a fresh process (deployment) or in any of several workers
(simulation), so the client party is kept on the client's disk, in a folder of its own, and
written atomically after every step. `Context.state`, which Flower keeps per node, holds a step
counter: a worker that still has the party in memory at the same counter reuses it; any other
worker reloads it from disk. Nothing here is sent anywhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from flwr.app import ConfigRecord, Context

from lada.federation.records import record_int
from lada.hosts.base import ClientParty
from lada.models.presets import cache_dir

STATE_RECORD = "lada"
_CACHE: dict[str, tuple[int, ClientParty]] = {}


def default_state_dir(run_id: int, client_id: int) -> Path:
    return cache_dir() / "flower-clients" / f"run-{run_id}" / f"client-{client_id}"


class ClientStateStore:
    """Load and save one client's party across messages of one run."""

    def __init__(self, context: Context, client_id: int) -> None:
        self.context = context
        self.client_id = client_id
        configured = context.node_config.get("state-dir")
        base = (
            Path(str(configured)) / f"run-{context.run_id}" / f"client-{client_id}"
            if configured
            else default_state_dir(context.run_id, client_id)
        )
        self.folder = base
        self.key = f"{context.run_id}/{client_id}"

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

    # ----------------------------------------------------------------- party
    @property
    def path(self) -> Path:
        return self.folder / "party.pt"

    def load(self) -> ClientParty:
        cached = _CACHE.get(self.key)
        if cached is not None and cached[0] == self.step:
            return cached[1]
        if not self.path.exists():
            raise FileNotFoundError(
                f"{self.path}: no state for client {self.client_id}; the run's setup step "
                "has not reached this client"
            )
        party: ClientParty = torch.load(self.path, weights_only=False)
        _CACHE[self.key] = (self.step, party)
        return party

    def save(self, party: ClientParty) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name("party.pt.partial")
        with partial.open("wb") as handle:
            torch.save(party, handle)
        os.replace(partial, self.path)
        record = self._record()
        record["step"] = self.step + 1
        _CACHE[self.key] = (self.step, party)
