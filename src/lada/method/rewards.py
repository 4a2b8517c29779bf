"""Rewards that train the learnability filter (paper Eq. 5/6, reconstructed).

Sign convention: a reward is *positive when the receiver's loss falls*. The population term
compares B = mean(exp(loss)) over the selected set before and after (or between rounds):

    r_batch = (B_prev - B) / max(B_prev, B)        in (-1, 1), > 0 when the loss decreased

Per-item loss is the receiver's mean token negative log-likelihood of the item's positive path,
so exp(loss) is the item's perplexity and B stays finite whatever the path length.

The per-item term r_item is a raw learnability signal min-max-normalised over the selected set
(one of three options, see `LadaConfig.item_reward`):

- gap: log p_sender(path) - log p_receiver(path); large = the sender still knows much more.
- margin: (log pi(y+) - log ref(y+)) - (log pi(y-) - log ref(y-)) after the round's training;
  large = the contrastive objective moved the receiver far towards the positive.
- loss_drop (a project extension, not in the paper): loss before minus loss after the round's
  training; large = the receiver learned the item.

The filter's target is r = alpha * sigmoid(r_item) + (1 - alpha) * sigmoid(r_batch).

`ITEM_REWARDS` is the registry of per-item kinds: what each needs measured before and after the
round's training, and its pure function. A new kind is one entry there (and its name in
`LadaConfig.item_reward`); the plug-in measures what the entry asks for and calls it.

Every function here refuses non-finite input: a NaN loss or log-prob is a fault to report, not
a reward. `finite_rows` lets a caller set such items aside (and count them) before computing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

#: Value given to every item when min-max normalisation has nothing to spread (all raw values
#: equal): the middle of [0, 1], i.e. "no information either way".
NO_SPREAD_VALUE = 0.5


def _as_vector(values: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: contains non-finite values")
    return array


def finite_rows(*columns: ArrayLike) -> np.ndarray:
    """Mask of the items whose value is finite in every given per-item column."""
    arrays = [np.asarray(c, dtype=np.float64) for c in columns]
    lengths = {a.shape for a in arrays}
    if len(lengths) > 1 or any(a.ndim != 1 for a in arrays):
        raise ValueError(f"columns: expected 1-D arrays of one length, got shapes {lengths}")
    mask = np.ones(len(arrays[0]) if arrays else 0, dtype=bool)
    for array in arrays:
        mask &= np.isfinite(array)
    return mask


def batch_value(losses: ArrayLike) -> float:
    """B = mean over items of exp(loss_i)."""
    array = _as_vector(losses, "losses")
    if array.size == 0:
        raise ValueError("losses: empty; B needs at least one item")
    with np.errstate(over="ignore"):  # a loss above ~709 nats gives inf, which callers check
        return float(np.mean(np.exp(array)))


def relative_decrease(previous: float, current: float) -> float:
    """(previous - current) / max(previous, current): positive when the value fell."""
    if previous <= 0 or current <= 0:
        raise ValueError(f"B: must be positive, got previous={previous}, current={current}")
    return (previous - current) / max(previous, current)


def batch_term(prev_losses: ArrayLike, losses: ArrayLike) -> float:
    """r_batch from two loss tables: relative decrease of B = mean(exp(loss))."""
    return relative_decrease(batch_value(prev_losses), batch_value(losses))


def minmax(values: ArrayLike) -> np.ndarray:
    """Scale to [0, 1] over the given values; all-equal values map to `NO_SPREAD_VALUE`."""
    array = _as_vector(values, "values")
    if array.size == 0:
        return array
    low, high = float(array.min()), float(array.max())
    if high - low <= 0.0:
        return np.full_like(array, NO_SPREAD_VALUE)
    return (array - low) / (high - low)


def learnability_gap(sender_logprobs: ArrayLike, receiver_logprobs: ArrayLike) -> np.ndarray:
    """Raw 'gap': log p_sender(path) - log p_receiver(path) per item."""
    sender = _as_vector(sender_logprobs, "sender_logprobs")
    receiver = _as_vector(receiver_logprobs, "receiver_logprobs")
    if sender.shape != receiver.shape:
        raise ValueError(f"logprobs: shapes differ, {sender.shape} vs {receiver.shape}")
    return sender - receiver


def contrastive_margin(
    policy_pos: ArrayLike, policy_neg: ArrayLike, ref_pos: ArrayLike, ref_neg: ArrayLike
) -> np.ndarray:
    """Raw 'margin': (pi(y+) - ref(y+)) - (pi(y-) - ref(y-)) per item."""
    arrays = [
        _as_vector(v, n)
        for v, n in (
            (policy_pos, "policy_pos"),
            (policy_neg, "policy_neg"),
            (ref_pos, "ref_pos"),
            (ref_neg, "ref_neg"),
        )
    ]
    if len({a.shape for a in arrays}) != 1:
        raise ValueError(f"logprobs: shapes differ, {[a.shape for a in arrays]}")
    pp, pn, rp, rn = arrays
    return (pp - rp) - (pn - rn)


def loss_drop(losses_before: ArrayLike, losses_after: ArrayLike) -> np.ndarray:
    """Raw 'loss_drop': per-item loss before minus after training (positive = learned)."""
    before = _as_vector(losses_before, "losses_before")
    after = _as_vector(losses_after, "losses_after")
    if before.shape != after.shape:
        raise ValueError(f"losses: shapes differ, {before.shape} vs {after.shape}")
    return before - after


def item_term(raw: ArrayLike) -> np.ndarray:
    """r_item: the chosen raw per-item signal, min-max-normalised over the selected set."""
    return minmax(raw)


def sigmoid(values: ArrayLike) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * array))  # overflow-free logistic


def mix(r_item: ArrayLike, r_batch: float, alpha: float) -> np.ndarray:
    """Training target r_i = alpha * sigmoid(r_item_i) + (1 - alpha) * sigmoid(r_batch)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha: must lie in [0, 1], got {alpha}")
    item = _as_vector(r_item, "r_item")
    return alpha * sigmoid(item) + (1.0 - alpha) * float(sigmoid(r_batch))


# ------------------------------------------------------------------------- item reward kinds
@dataclass(frozen=True)
class ItemMeasures:
    """Per-item numbers measured around one round's training of a pair, one entry per pair.

    Log-probs use the config's normalisation (`LadaConfig.normalize_logprobs`); an entry is
    NaN where it could not be measured, and a column is None when the kind did not ask for it.
    """

    loss_before: np.ndarray  # token-mean NLL of the positive before training
    loss_after: np.ndarray  # the same after training
    ref_positive: np.ndarray | None = None  # log p(y+) before training
    ref_negative: np.ndarray | None = None  # log p(y-) before training
    policy_positive: np.ndarray | None = None  # log p(y+) after training
    policy_negative: np.ndarray | None = None  # log p(y-) after training
    gap: np.ndarray | None = None  # log p_sender(path) - log p_receiver(path) at round start


def _measured(values: np.ndarray | None, name: str, kind: str) -> np.ndarray:
    if values is None:
        raise ValueError(f"item reward {kind!r}: needs {name}, which was not measured")
    return values


@dataclass(frozen=True)
class ItemRewardKind:
    """One per-item reward: what it reads, what the plug-in must measure for it, its function.

    `columns` picks the measures `raw` takes (in order); items where any of them is not finite
    are set aside before `raw` runs.
    """

    name: str
    before: str  # what is measured before training, for docs and error messages
    after: str  # what is measured after training
    needs_gap: bool  # the receiver scores the sender's paths at round start
    needs_negatives_after: bool  # the receiver scores its negatives again after training
    columns: Callable[[ItemMeasures], tuple[np.ndarray, ...]]
    raw: Callable[..., np.ndarray]


ITEM_REWARDS: dict[str, ItemRewardKind] = {
    "gap": ItemRewardKind(
        name="gap",
        before="log p_sender(path) and log p_receiver(path) of the sender's path",
        after="nothing",
        needs_gap=True,
        needs_negatives_after=False,
        columns=lambda m: (_measured(m.gap, "gap", "gap"),),
        raw=lambda gap: _as_vector(gap, "gap"),
    ),
    "margin": ItemRewardKind(
        name="margin",
        before="log p(y+) and log p(y-) (the reference)",
        after="log p(y+) and log p(y-) (the policy)",
        needs_gap=False,
        needs_negatives_after=True,
        columns=lambda m: (
            _measured(m.policy_positive, "policy_positive", "margin"),
            _measured(m.policy_negative, "policy_negative", "margin"),
            _measured(m.ref_positive, "ref_positive", "margin"),
            _measured(m.ref_negative, "ref_negative", "margin"),
        ),
        raw=contrastive_margin,
    ),
    "loss_drop": ItemRewardKind(
        name="loss_drop",
        before="token-mean NLL of y+",
        after="token-mean NLL of y+",
        needs_gap=False,
        needs_negatives_after=False,
        columns=lambda m: (m.loss_before, m.loss_after),
        raw=loss_drop,
    ),
}


def item_reward_kind(name: str) -> ItemRewardKind:
    """The registered item reward called `name` (a clear error naming the known ones)."""
    try:
        return ITEM_REWARDS[name]
    except KeyError:
        raise ValueError(
            f"item_reward: unknown kind {name!r}; known: {', '.join(ITEM_REWARDS)}"
        ) from None
