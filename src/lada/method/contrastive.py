"""Domain-adaptive contrastive reasoning distillation: L = L_SFT + lambda * L_CD.

With a positive path y+ and a negative path y- for prompt x, and a frozen reference pi_ref (the
receiver's own weights at the start of the round):

    delta = beta * [(log pi(y+|x) - log pi_ref(y+|x)) - (log pi(y-|x) - log pi_ref(y-|x))]
    L_CD  = - mean log sigmoid(delta)

log pi(y|x) is the path's summed token log-probability (or its per-token mean, see
`LadaConfig.normalize_logprobs`). The reference needs no model copy: its log-probs are computed
once, before the round's first update, and passed in as numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from lada.method.config import LadaConfig


@dataclass(frozen=True)
class PairLogprobs:
    """Per-item log-probs of the positive and the negative paths, both shaped [B]."""

    positive: torch.Tensor
    negative: torch.Tensor

    def __post_init__(self) -> None:
        if self.positive.shape != self.negative.shape or self.positive.ndim != 1:
            raise ValueError(
                f"logprobs: positive {tuple(self.positive.shape)} and negative "
                f"{tuple(self.negative.shape)} must be equal 1-D shapes"
            )


@dataclass(frozen=True)
class DistillBatch:
    """A minibatch of pairs, with the reference log-probs computed at the start of the round."""

    prompts: tuple[str, ...]
    positives: tuple[str, ...]
    negatives: tuple[str, ...]
    ref: PairLogprobs

    def __len__(self) -> int:
        return len(self.prompts)


@dataclass(frozen=True)
class LossParts:
    """The loss and its parts; only `total` carries gradients.

    `margin` is the batch mean of (pi+ - ref+) - (pi- - ref-) (unscaled by beta): how far
    training has moved the receiver towards the positives relative to the negatives.
    """

    total: torch.Tensor
    sft: torch.Tensor
    cd: torch.Tensor
    margin: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        return {
            "total": float(self.total.detach()),
            "sft": float(self.sft),
            "cd": float(self.cd),
            "margin": float(self.margin),
        }


class PathScorer(Protocol):
    """What the loss needs from a receiver (`lada.models.wrapper.ReasoningModel` has it)."""

    def score_paths(
        self, prompts: Sequence[str], paths: Sequence[str], *, grad: bool = False
    ) -> Any: ...


def contrastive_loss(
    policy_pos: torch.Tensor,
    policy_neg: torch.Tensor,
    ref_pos: torch.Tensor,
    ref_neg: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """- mean log sigmoid(beta * [(pi+ - ref+) - (pi- - ref-)])."""
    delta = beta * ((policy_pos - ref_pos) - (policy_neg - ref_neg))
    return -F.logsigmoid(delta).mean()


def distillation_loss(
    receiver: PathScorer,
    batch: DistillBatch,
    ref_logprobs: PairLogprobs,
    config: LadaConfig,
) -> LossParts:
    """L_SFT (token cross-entropy on y+) + lambda * L_CD, from ONE padded forward pass.

    Positives and negatives go through `score_paths` together and are split afterwards; with
    lambda = 0 only the positives are scored.
    """
    n = len(batch)
    if n == 0:
        raise ValueError("batch: empty; nothing to compute a loss on")
    use_cd = config.cd_weight > 0
    if use_cd:
        scores = receiver.score_paths(
            list(batch.prompts) * 2, list(batch.positives) + list(batch.negatives), grad=True
        )
    else:
        scores = receiver.score_paths(list(batch.prompts), list(batch.positives), grad=True)
    positive_total = scores.total[:n]
    sft = -positive_total.sum() / scores.n_tokens[:n].sum().clamp(min=1)
    if not use_cd:
        zero = sft.new_zeros(())
        return LossParts(total=sft, sft=sft.detach(), cd=zero, margin=zero)

    policy = scores.mean() if config.normalize_logprobs else scores.total
    policy_pos, policy_neg = policy[:n], policy[n:]
    ref_pos = ref_logprobs.positive.to(policy.device, policy.dtype)
    ref_neg = ref_logprobs.negative.to(policy.device, policy.dtype)
    if ref_pos.shape != policy_pos.shape:
        raise ValueError(f"ref_logprobs: {tuple(ref_pos.shape)} for a batch of {n} pairs")
    cd = contrastive_loss(policy_pos, policy_neg, ref_pos, ref_neg, config.beta)
    margin = ((policy_pos - ref_pos) - (policy_neg - ref_neg)).mean().detach()
    total = sft + config.cd_weight * cd
    return LossParts(total=total, sft=sft.detach(), cd=cd.detach(), margin=margin)


@torch.no_grad()
def path_statistics(
    receiver: PathScorer,
    prompts: Sequence[str],
    paths: Sequence[str],
    *,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Summed log-prob and token count of each path, in batches, without gradients.

    Both are needed: the sum (or sum / count) for L_CD and the rewards, and the token-mean
    negative log-likelihood (the per-item loss) for the population reward.
    """
    model = getattr(receiver, "model", None)
    was_training = bool(getattr(model, "training", False))
    if model is not None:
        model.eval()
    totals, counts = [], []
    try:
        for lo in range(0, len(prompts), batch_size):
            scores = receiver.score_paths(
                list(prompts[lo : lo + batch_size]), list(paths[lo : lo + batch_size])
            )
            totals.append(scores.total.detach().double().cpu().numpy())
            counts.append(scores.n_tokens.detach().double().cpu().numpy())
    finally:
        if model is not None:
            model.train(was_training)
    if not totals:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(totals), np.concatenate(counts)


def select_logprobs(totals: np.ndarray, counts: np.ndarray, normalize: bool) -> np.ndarray:
    """Summed log-probs, or per-token means when `normalize`."""
    return totals / np.maximum(counts, 1.0) if normalize else totals


def mean_nll(totals: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per-item loss: token-mean negative log-likelihood."""
    return -totals / np.maximum(counts, 1.0)
