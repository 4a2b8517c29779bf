"""RHO-LOSS selection (Mindermann et al., 2022) as a baseline arm of the evaluation protocol.

An item is worth training on when the receiver's loss on it is high *and* a model trained on the
receiver's own held-out data finds it easy: that part of the loss is learnable and relevant, while
loss that even such a model keeps (noise, items beyond reach, off-domain text) is irreducible.
The score is the reducible holdout loss

    score(x) = L_receiver(x) - L_IL(x),

both as the token-mean negative log-likelihood of prompt -> sender path, and the top-scored
items are taken.

Choices here, where the paper's setting (one model, one data stream) does not fit a federation:

* The irreducible-loss (IL) model is a copy of the receiver as it is at the pair's first
  selection, fine-tuned on the receiver's local items (gold paths) for
  `LadaConfig.rho_il_epochs` epochs: the receiver's own architecture and tokenizer, so both
  losses are measured on the same tokens. It is trained once per pair and then kept fixed, as
  in the paper.
* Its "holdout" data is a seeded `LadaConfig.rho_holdout_fraction` share of the local items,
  all of them by default: the candidates are public items and never local ones, so the IL model
  never trained on a candidate, which is what the held-out split guards against in the paper.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lada.method.config import LadaConfig
from lada.method.contrastive import PathScorer, mean_nll, path_statistics
from lada.method.receiver import Receiver
from lada.models.guards import CountSink
from lada.models.training import sft
from lada.models.wrapper import ReasoningModel
from lada.tasks.item import ReasoningItem

STATE_FORMAT = 1


def rho_scores(receiver_loss: np.ndarray, irreducible_loss: np.ndarray) -> np.ndarray:
    """Reducible holdout loss per item: receiver loss minus irreducible loss."""
    receiver_loss = np.asarray(receiver_loss, dtype=np.float64)
    irreducible_loss = np.asarray(irreducible_loss, dtype=np.float64)
    if receiver_loss.shape != irreducible_loss.shape:
        raise ValueError(
            f"losses: receiver {receiver_loss.shape} and irreducible {irreducible_loss.shape} "
            "differ in shape"
        )
    return receiver_loss - irreducible_loss


def holdout_items(
    items: Sequence[ReasoningItem], fraction: float, seed: int
) -> list[ReasoningItem]:
    """The IL model's training items: a seeded `fraction` of `items` (at least one), in order."""
    items = list(items)
    if not items:
        return []
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"rho_holdout_fraction: must be in (0, 1], got {fraction}")
    count = max(1, math.ceil(fraction * len(items)))
    if count >= len(items):
        return items
    chosen = np.sort(np.random.default_rng(seed).choice(len(items), size=count, replace=False))
    return [items[i] for i in chosen]


def path_losses(
    model: PathScorer, prompts: Sequence[str], paths: Sequence[str], *, batch_size: int
) -> np.ndarray:
    """Token-mean NLL of each path given its prompt, without gradients."""
    if not prompts:
        return np.zeros(0)
    totals, counts = path_statistics(model, prompts, paths, batch_size=batch_size)
    return mean_nll(totals, counts)


@dataclass
class IrreducibleLossModel:
    """The receiver-side model whose loss stands for the irreducible part (trained once per pair).

    `model` is a clone of the receiver, `n_items` the number of local items it trained on,
    `train_loss` the mean of its last epoch's batch losses.
    """

    model: ReasoningModel
    n_items: int
    train_loss: float
    steps: int

    @classmethod
    def train(
        cls,
        receiver: Receiver,
        local_items: Sequence[ReasoningItem],
        config: LadaConfig,
        *,
        pair: str,
        log: CountSink | None = None,
    ) -> IrreducibleLossModel:
        """Clone `receiver` and fine-tune the clone on (a share of) its local items' gold paths.

        The receiver itself is left untouched: the clone has its own weights and optimizer.
        """
        items = holdout_items(local_items, config.rho_holdout_fraction, config.seed)
        if not items:
            raise ValueError(
                f"{pair}: selection_mode 'rho_loss' needs the receiver's local items to train "
                "the irreducible-loss model, and it has none"
            )
        model = receiver.clone()
        losses = sft(
            model,
            items,
            epochs=config.rho_il_epochs,
            batch_size=config.rho_il_batch_size,
            seed=config.seed,
            desc=f"{pair} irreducible-loss model",
            progress=False,
            max_nonfinite_skips=config.max_nonfinite_skips,
            log=log,
        )
        model.eval()
        model.reset_optimizer()  # trained once: its moments are never needed again
        per_epoch = -(-len(items) // config.rho_il_batch_size)
        last = losses[-per_epoch:]
        train_loss = float(np.mean(last)) if last else float("nan")
        return cls(model=model, n_items=len(items), train_loss=train_loss, steps=len(losses))

    def losses(
        self, prompts: Sequence[str], paths: Sequence[str], *, batch_size: int
    ) -> np.ndarray:
        """The irreducible loss of each (prompt, path)."""
        return path_losses(self.model, prompts, paths, batch_size=batch_size)

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """The IL model's learned weights and its training summary (tensors and numbers only).

        Only the learned weights are kept: the rest of the model is the receiver's own frozen
        part, which `from_state` takes from the receiver it is restored beside.
        """
        return {
            "format": STATE_FORMAT,
            "weights": self.model.trainable_state(),
            "n_items": self.n_items,
            "train_loss": self.train_loss,
            "steps": self.steps,
        }

    @classmethod
    def from_state(cls, receiver: Receiver, state: dict[str, Any]) -> IrreducibleLossModel:
        """Rebuild the IL model beside `receiver` from `state_dict` (a clone, then its weights)."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(
                f"irreducible-loss model state: unknown format {state.get('format')!r}"
            )
        model = receiver.clone()
        model.load_trainable_state(state["weights"])
        model.eval()
        return cls(
            model=model,
            n_items=int(state["n_items"]),
            train_loss=float(state["train_loss"]),
            steps=int(state["steps"]),
        )


def copy_state(state: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of an IL state (tensors cloned), so a kept state cannot be changed later."""
    out = dict(state)
    out["weights"] = {k: v.detach().clone() for k, v in state["weights"].items()}
    return out
