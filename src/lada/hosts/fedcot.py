"""FedCoT / distilling step-by-step: one-way LLM -> SLM rationale distillation.

Per round the server sends the LLM's paths on the public pool; each client fine-tunes on its
private split, then learns from the LLM with the multi-task loss
    alpha * L_rationale(prompt -> LLM path) + (1 - alpha) * L_label([label] prompt -> answer)
The task prefix lets the label task share the model without a rationale; evaluation uses the
plain prompt (rationale, then answer), the same for every host. The LLM is never updated, so its
paths are written once and reused.

Either way the client spends exactly `budget.client_steps` optimizer steps per round learning
from the LLM (one step covers a batch of both tasks). With `correctness_gate` (the "host + gate"
arm, LaDa off) every LLM path whose final answer is wrong is first replaced by the item's gold
path (`lada.hosts.steps.gate_paths`).

With LaDa: the client's filter chooses which public items it learns from, and the loss on them
is L_SFT + lambda * L_CD (see `lada.method`). The host's exchange is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from lada.hosts.base import Exchange, Host
from lada.hosts.config import FedCoTConfig
from lada.hosts.parties import ClientParty, ServerParty, host_state
from lada.hosts.payloads import Empty, Payload, PublicPaths
from lada.hosts.steps import gate_paths, write_public_paths
from lada.models.training import TrainUsage, fit, sequence_tokens
from lada.tasks.prompts import render_path, render_prompt


@dataclass
class FedCoTServerState:
    """The LLM's paths on the public pool: the LLM is frozen, so they are written once."""

    llm_paths: PublicPaths | None = None


class FedCoT(Host[FedCoTConfig]):
    name: ClassVar[str] = "fedcot"
    exchanges: ClassVar[tuple[str, ...]] = ("train",)

    def round_steps(self) -> dict[str, Exchange]:
        return {"train": Exchange(self.send_train, self.client_train, self.receive_train)}

    # ------------------------------------------------------------------ train
    def send_train(
        self, server: ServerParty, round_idx: int, client_ids: list[int]
    ) -> dict[int, Payload]:
        state = host_state(server, FedCoTServerState)
        if state.llm_paths is None:  # the LLM is frozen: write its paths once
            state.llm_paths = write_public_paths(
                server,
                server.public_pool,
                max_new_tokens=self.train.max_new_tokens,
                batch_size=self.train.generation_batch_size,
            )
        return {cid: state.llm_paths for cid in client_ids}

    def client_train(self, client: ClientParty, payload: Payload, round_idx: int) -> Payload:
        assert isinstance(payload, PublicPaths)
        seed = self.train_private(client, round_idx)
        if self.lada_enabled:
            self.client_lada(client, payload, round_idx, seed)
        else:
            self._multitask_distill(client, payload, seed)
        return Empty()

    def receive_train(
        self, server: ServerParty, replies: dict[int, Payload], round_idx: int
    ) -> None:
        return None

    # ---------------------------------------------------------------- helpers
    def _multitask_distill(self, client: ClientParty, paths: PublicPaths, seed: int) -> None:
        by_id = client.public_by_id()
        items = [by_id[i] for i in paths.item_ids]
        prompts = [render_prompt(it) for it in items]
        label_prompts = [self.config.label_prefix + p for p in prompts]
        labels = [render_path("", it.answer) for it in items]
        rationales = list(paths.paths)
        if self.config.correctness_gate:
            rationales = gate_paths(client, items, rationales)
        alpha = self.config.rationale_weight
        # Both tasks of an item go through the backpropagated pass: both count as its tokens.
        tokens = [
            a + b
            for a, b in zip(
                sequence_tokens(client.model, prompts, rationales),
                sequence_tokens(client.model, label_prompts, labels),
            )
        ]

        def loss_fn(batch: list[int]) -> torch.Tensor:
            n = len(batch)
            # Rationale and label tasks of a batch share one padded forward pass.
            scores = client.model.score_paths(
                [prompts[i] for i in batch] + [label_prompts[i] for i in batch],
                [rationales[i] for i in batch] + [labels[i] for i in batch],
                grad=True,
            )
            rationale = -scores.total[:n].sum() / scores.n_tokens[:n].sum().clamp(min=1)
            label = -scores.total[n:].sum() / scores.n_tokens[n:].sum().clamp(min=1)
            return alpha * rationale + (1 - alpha) * label

        lengths = [len(p) + len(q) for p, q in zip(prompts, rationales)]
        usage = TrainUsage()
        with client.log.phase("distillation"):
            losses = fit(
                client.model,
                lengths,
                loss_fn,
                steps=self.budget.client_steps,
                batch_size=self.train.batch_size,
                seed=seed,
                desc=f"{client.name} distill",
                max_nonfinite_skips=self.train.max_nonfinite_skips,
                log=client.log,
                example_tokens=tokens,
                usage=usage,
            )
        client.log.spend(client.model.name, usage)
        client.log.losses["distillation"].extend(losses)
