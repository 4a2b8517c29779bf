"""The parties of a federation: each one's model, plug-in, private data and round log.

Kept apart from the host interface (`lada.hosts.base`) so that the steps hosts share
(`lada.hosts.steps`, `lada.hosts.lada_steps`) can act on parties without importing the hosts
that call them.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from lada.hosts.payloads import EvalReport
from lada.method.plugin import LadaPlugin
from lada.models.training import TrainUsage
from lada.models.wrapper import ReasoningModel
from lada.tasks.item import ReasoningItem


@dataclass
class RoundLog:
    """What a party did in one round: seconds per phase, counters, selections, losses, and the
    training each of its models spent, inside the round's budget and outside it (private SFT)."""

    timings: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    counters: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    losses: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    selections: list[dict[str, Any]] = field(default_factory=list)
    #: Per model: steps and tokens spent learning from the other party on public items, the
    #: training `lada.hosts.budget.Budget` holds equal across arms.
    budget: dict[str, TrainUsage] = field(default_factory=lambda: defaultdict(TrainUsage))
    #: Per model: steps and tokens of private SFT (and the warm-up), the same in every arm.
    private: dict[str, TrainUsage] = field(default_factory=lambda: defaultdict(TrainUsage))

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] += time.perf_counter() - start

    def count(self, name: str, value: float = 1.0) -> None:
        self.counters[name] += value

    def spend(self, model: str, usage: TrainUsage, *, private: bool = False) -> None:
        """Add what a training call of `model` spent, to the budget or to private SFT."""
        (self.private if private else self.budget)[model].add(usage.steps, usage.tokens)

    @property
    def trained_tokens(self) -> dict[str, int]:
        """Tokens forwarded with a gradient per model, budgeted and private together."""
        out: dict[str, int] = defaultdict(int)
        for part in (self.budget, self.private):
            for model, usage in part.items():
                out[model] += usage.tokens
        return dict(out)

    def to_dict(self) -> dict[str, Any]:
        def usage(part: dict[str, TrainUsage]) -> dict[str, dict[str, int]]:
            return {m: {"steps": u.steps, "tokens": u.tokens} for m, u in part.items()}

        return {
            "timings": dict(self.timings),
            "counters": dict(self.counters),
            "losses": {k: float(sum(v) / len(v)) for k, v in self.losses.items() if v},
            "budget": usage(self.budget),
            "private": usage(self.private),
            "trained_tokens": self.trained_tokens,
        }


@dataclass
class Party:
    """One side of the federation: its model, its optional plug-in, and its host's state.

    `state` is the typed state of the host the party runs under (see `host_state`), kept
    between steps and rounds and checkpointed with the party.
    """

    name: str
    model: ReasoningModel
    plugin: LadaPlugin | None = None  # the receiver's LaDa plug-in, when LaDa is enabled
    state: object | None = None
    log: RoundLog = field(default_factory=RoundLog)

    def new_round(self) -> None:
        self.log = RoundLog()


StateT = TypeVar("StateT")


def host_state(party: Party, kind: type[StateT]) -> StateT:
    """The host's state on `party`, of the host's own dataclass `kind` (empty on first use).

    A party runs under one host, so it holds one kind of state; asking for another kind is a
    programming error and raises instead of mixing two hosts' state.
    """
    if party.state is None:
        party.state = kind()
    if not isinstance(party.state, kind):
        raise TypeError(f"{party.name}: holds {type(party.state).__name__}, not {kind.__name__}")
    return party.state


@dataclass
class ServerParty(Party):
    """The server: the LLM and the public pool."""

    public_pool: list[ReasoningItem] = field(default_factory=list)
    #: The clients' evaluation reports of the last `evaluate` exchange, taken by the runner.
    eval_reports: dict[int, EvalReport] = field(default_factory=dict)


@dataclass
class ClientParty(Party):
    """Client k: its SLM and its private train/test split, which never leave this object."""

    client_id: int = 0
    train: list[ReasoningItem] = field(default_factory=list)
    test: list[ReasoningItem] = field(default_factory=list)
    #: The public pool as received from the server (public, so clients may keep a copy).
    public_pool: list[ReasoningItem] = field(default_factory=list)
    #: Index of `public_pool` by item id, rebuilt when the pool changes size.
    _public_index: dict[str, ReasoningItem] = field(default_factory=dict, repr=False)

    def public_by_id(self) -> dict[str, ReasoningItem]:
        if len(self._public_index) != len(self.public_pool):
            self._public_index = {it.id: it for it in self.public_pool}
        return self._public_index


def step_seed(round_idx: int, offset: int) -> int:
    """Seed of one step: distinct per round and per party or step (`offset`), fixed per run."""
    return round_idx * 7919 + offset
