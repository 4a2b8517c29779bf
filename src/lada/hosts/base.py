"""What every host framework is made of: the step interface over parties (`lada.hosts.parties`).

A host (FedCoT, FedCoLLM, FedMKT, CrossLM) is written as server-side and client-side steps that
exchange typed payloads (`lada.hosts.payloads`). A round is a fixed sequence of *exchanges*; in
each, the server builds one payload per client (`server_send`), each client answers with one
payload (`client_step`), and the server takes the answers (`server_receive`). Nothing else crosses
between parties, so the in-process runtime and the Flower runtime can carry the very same steps.

The LaDa plug-in, when enabled, lives inside the parties (`Party.plugin`); hosts call it at the
points documented in `lada.method.plugin`. Without it, a host behaves as the original framework.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from lada.hosts.budget import Budget, share_steps
from lada.hosts.config import TrainConfig
from lada.hosts.lada_steps import receive_with_lada
from lada.hosts.parties import ClientParty, Party, RoundLog, ServerParty, step_seed
from lada.hosts.payloads import (
    Empty,
    EvalReport,
    Payload,
    PayloadError,
    PublicItems,
    PublicPaths,
)
from lada.hosts.steps import private_sft
from lada.models.training import evaluate
from lada.tasks.item import ReasoningItem

#: Re-exported: hosts and runtimes take the parties from here beside the host interface.
__all__ = [
    "EVALUATE",
    "SETUP",
    "ClientParty",
    "Exchange",
    "Host",
    "Party",
    "RoundLog",
    "ServerParty",
    "step_seed",
]


SETUP = "setup"
EVALUATE = "evaluate"
#: A host's own settings (`lada.hosts.config`): each host is generic over its config class.
ConfigT = TypeVar("ConfigT", bound=BaseModel)

#: The server builds one payload per client: (server, round, client ids) -> payloads.
SendStep = Callable[[ServerParty, int, list[int]], dict[int, Payload]]
#: A client answers the server's payload: (client, payload, round) -> reply.
ClientStep = Callable[[ClientParty, Payload, int], Payload]
#: The server takes the replies: (server, replies by client id, round).
ReceiveStep = Callable[[ServerParty, dict[int, Payload], int], None]


@dataclass(frozen=True)
class Exchange:
    """The three steps of one exchange: the server sends, each client answers, the server takes."""

    send: SendStep
    client: ClientStep
    receive: ReceiveStep


class Host(ABC, Generic[ConfigT]):
    """A collaboration framework as a fixed sequence of exchanges per round.

    Subclasses set `name` and `exchanges` and declare each exchange's steps in `round_steps`
    (server builds one payload per client, a client answers, the server takes the replies).
    Steps may only use their own party's state (`lada.hosts.parties.host_state`) and the
    payloads they receive. Two exchanges are common to every host and implemented here:
    `setup` (the public pool is broadcast once) and `evaluate` (each client scores its SLM on its
    private test split and reports numbers only).
    """

    name: ClassVar[str]
    #: Exchanges of one round, in order (e.g. ("train",) or ("generate", "train")): the keys of
    #: `round_steps`, readable from the class before a host is built.
    exchanges: ClassVar[tuple[str, ...]]

    def __init__(
        self,
        config: ConfigT,
        train: TrainConfig,
        lada_enabled: bool,
        budget: Budget | None = None,
    ) -> None:
        self.config = config
        self.train = train
        self.lada_enabled = lada_enabled
        #: Optimizer steps per party per round for learning on public items (every arm alike).
        self.budget = budget if budget is not None else Budget()
        declared = tuple(self.round_steps())
        if declared != self.exchanges:
            raise TypeError(f"{self.name}: round_steps declares {declared}, not {self.exchanges}")

    @abstractmethod
    def round_steps(self) -> dict[str, Exchange]:
        """The host's own exchanges of one round, in order, each with its three steps."""

    def step_table(self) -> dict[str, Exchange]:
        """Every exchange a run uses: setup, the host's own, and evaluate."""
        return {
            SETUP: Exchange(self.send_setup, self.client_setup, self.receive_setup),
            **self.round_steps(),
            EVALUATE: Exchange(self.send_evaluate, self.client_evaluate, self.receive_evaluate),
        }

    # -------------------------------------------------------------- dispatch
    def server_send(
        self, exchange: str, server: ServerParty, round_idx: int, client_ids: list[int]
    ) -> dict[int, Payload]:
        return self._exchange(exchange).send(server, round_idx, client_ids)

    def client_step(
        self, exchange: str, client: ClientParty, payload: Payload, round_idx: int
    ) -> Payload:
        return self._exchange(exchange).client(client, payload, round_idx)

    def server_receive(
        self, exchange: str, server: ServerParty, replies: dict[int, Payload], round_idx: int
    ) -> None:
        self._exchange(exchange).receive(server, replies, round_idx)

    def _exchange(self, exchange: str) -> Exchange:
        table = self.step_table()
        if exchange not in table:
            raise KeyError(f"{self.name}: no exchange {exchange!r}; known: {list(table)}")
        return table[exchange]

    def train_private(self, client: ClientParty, round_idx: int) -> int:
        """The local SFT every host starts a client's round with; returns the step's seed."""
        seed = step_seed(round_idx, client.client_id)
        private_sft(
            client,
            client.train,
            epochs=self.train.local_epochs,
            batch_size=self.train.batch_size,
            max_nonfinite_skips=self.train.max_nonfinite_skips,
            seed=seed,
        )
        return seed

    def client_lada(
        self, client: ClientParty, paths: PublicPaths, round_idx: int, seed: int
    ) -> dict[str, Any]:
        """A client learns the sender's public paths through the LaDa plug-in (pair llm->slm_k)."""
        return receive_with_lada(
            client,
            paths,
            client.public_by_id(),
            client.train,
            round_idx=round_idx,
            train=self.train,
            steps=self.budget.client_steps,
            seed=seed,
        )

    def server_lada(
        self,
        server: ServerParty,
        offers: list[tuple[PublicPaths, int]],
        items_by_id: dict[str, ReasoningItem],
        round_idx: int,
    ) -> None:
        """The LLM learns each client's paths through LaDa (pairs slm_k->llm), in offer order.

        `offers` holds (the client's paths, the step's seed). The pairs share the round's
        `budget.server_steps`: each takes an even share of what is still unspent, so a pair with
        nothing to train on hands its share to the pairs after it. With more pairs than steps,
        the pairs left without a step skip the round (counted as `pairs_without_steps`), and the
        first pair served rotates by the steps each round.
        The server passes no local data of its own: its candidates are the public pool itself,
        so round 1 takes a share of every cluster (`LadaPlugin.select`'s fallback) instead of
        the clusters nearest to a centroid of the very items it selects from.
        """
        left = self.budget.server_steps
        if len(offers) > left:
            # More clients than steps: a pair with no step to train would still pay for its
            # selection and negatives and feed its filter rewards of items never trained on, so
            # it sits the round out; which pairs train rotates with the round, so none starves.
            start = (round_idx * left) % len(offers)
            offers = offers[start:] + offers[:start]
        for k, (paths, seed) in enumerate(offers):
            steps = share_steps(left, len(offers) - k, 0)
            if steps == 0:
                server.log.count("pairs_without_steps")
                continue
            before = server.log.budget[server.model.name].steps
            receive_with_lada(
                server,
                paths,
                items_by_id,
                (),
                round_idx=round_idx,
                train=self.train,
                steps=steps,
                seed=seed,
            )
            left -= server.log.budget[server.model.name].steps - before

    # ----------------------------------------------------------------- setup
    def send_setup(
        self, server: ServerParty, round_idx: int, client_ids: list[int]
    ) -> dict[int, Payload]:
        pool = PublicItems(items=[it.to_dict() for it in server.public_pool])
        return {cid: pool for cid in client_ids}

    def client_setup(self, client: ClientParty, payload: Payload, round_idx: int) -> Payload:
        assert isinstance(payload, PublicItems)
        client.public_pool = [ReasoningItem.from_dict(d) for d in payload.items]
        # SLMs start from scratch or from a general checkpoint: they first learn their own data.
        private_sft(
            client,
            client.train,
            epochs=self.train.warmup_local_epochs,
            batch_size=self.train.batch_size,
            max_nonfinite_skips=self.train.max_nonfinite_skips,
            seed=client.client_id,
            phase="warmup",
        )
        return Empty()

    def receive_setup(
        self, server: ServerParty, replies: dict[int, Payload], round_idx: int
    ) -> None:
        return None

    # -------------------------------------------------------------- evaluate
    def send_evaluate(
        self, server: ServerParty, round_idx: int, client_ids: list[int]
    ) -> dict[int, Payload]:
        return {cid: Empty() for cid in client_ids}

    def client_evaluate(self, client: ClientParty, payload: Payload, round_idx: int) -> Payload:
        with client.log.phase("evaluation"):
            result = evaluate(
                client.model,
                client.test,
                batch_size=self.train.generation_batch_size,
                max_new_tokens=self.train.max_new_tokens,
            )
        report = EvalReport(
            accuracy=result.accuracy,
            n=result.n,
            per_domain=result.per_domain,
            log=client.log.to_dict(),
            selections=client.log.selections,
        )
        client.new_round()
        return report

    def receive_evaluate(
        self, server: ServerParty, replies: dict[int, Payload], round_idx: int
    ) -> None:
        reports = {cid: r for cid, r in replies.items() if isinstance(r, EvalReport)}
        if len(reports) != len(replies):
            raise PayloadError(f"{self.name}: every client must answer evaluate with eval_report")
        server.eval_reports = reports
