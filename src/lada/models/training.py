"""Local training (supervised fine-tuning on paths, or any loss) and evaluation of a model."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, get_args

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from lada.models.guards import DEFAULT_MAX_NONFINITE_SKIPS, CountSink, NonFiniteGuard
from lada.models.wrapper import ReasoningModel
from lada.tasks.answers import check_answer, extract_answer
from lada.tasks.item import ReasoningItem
from lada.tasks.prompts import gold_path, render_prompt

#: A loss over a batch given as indices into the caller's examples.
BatchLoss = Callable[[list[int]], torch.Tensor]

#: How the rate falls from its peak after warmup (`LRSchedule.decay`).
DecayShape = Literal["constant", "linear", "cosine"]
DECAY_SHAPES: tuple[str, ...] = get_args(DecayShape)


def optimizer_steps(n_examples: int, batch_size: int, epochs: int) -> int:
    """Optimizer steps of `fit` over `n_examples` (the last batch of an epoch may be short)."""
    return epochs * -(-n_examples // batch_size)


class LRSchedule(BaseModel):
    """Learning rate over one `fit` call: linear warmup to the model's rate, then a decay.

    Small models trained from scratch on few steps learn faster with a short warmup (Adam's
    early moment estimates are noisy) and a decay at the end (the last steps settle instead of
    bouncing at the peak rate). The peak is the model's own `learning_rate`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    warmup_fraction: float = Field(
        0.05, ge=0, lt=1, description="Share of the call's optimizer steps spent warming up."
    )
    decay: DecayShape = Field(
        "cosine", description="Shape of the fall from the peak to the floor after warmup."
    )
    min_lr_fraction: float = Field(
        0.1, ge=0, le=1, description="Floor of the decay as a fraction of the peak rate."
    )

    def factor(self, step: int, total_steps: int) -> float:
        """Multiplier of the peak rate at 0-based `step` of `total_steps`."""
        warmup = int(self.warmup_fraction * total_steps)
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if self.decay == "constant":
            return 1.0
        span = max(total_steps - warmup - 1, 1)
        progress = min((step - warmup) / span, 1.0)
        if self.decay == "linear":
            shape = 1.0 - progress
        else:
            shape = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_lr_fraction + (1.0 - self.min_lr_fraction) * shape


def _set_optimizer_lr(model: ReasoningModel, lr: float) -> None:
    for group in model.optimizer.param_groups:
        group["lr"] = lr


def length_bucketed_batches(
    lengths: Sequence[int], batch_size: int, rng: np.random.Generator, pool: int = 8
) -> Iterator[list[int]]:
    """Shuffled batches of similar length (less padding, same examples every epoch).

    Examples are shuffled, cut into pools of `pool` batches, sorted by length inside a pool, and
    the resulting batches are shuffled again, so the order stays random across the epoch.
    """
    order = rng.permutation(len(lengths))
    batches: list[list[int]] = []
    span = batch_size * pool
    for lo in range(0, len(order), span):
        chunk = sorted(order[lo : lo + span].tolist(), key=lambda i: lengths[i])
        batches.extend(chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size))
    for b in rng.permutation(len(batches)):
        yield batches[b]


def cycled_batches(
    lengths: Sequence[int], batch_size: int, rng: np.random.Generator
) -> Iterator[list[int]]:
    """Endless length-bucketed batches: one reshuffled pass after another (none if no examples)."""
    while len(lengths):
        yield from length_bucketed_batches(lengths, batch_size, rng)


@dataclass
class TrainUsage:
    """What training spent: optimizer steps, and tokens forwarded with a gradient.

    A token counts when it is a non-padding token of a sequence in a forward pass that was
    backpropagated (prompt and path alike, every path of the pass). Batches skipped for a
    non-finite loss take no step and count nothing. This is the accounting every arm of a
    comparison reports beside its step budget.
    """

    steps: int = 0
    tokens: int = 0

    def add(self, steps: int, tokens: int) -> None:
        self.steps += steps
        self.tokens += tokens


class Packer(Protocol):
    """A model that builds padded batches the way its forward pass reads them."""

    def pack(
        self, prompts: Sequence[str], paths: Sequence[str]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...


def sequence_tokens(model: Packer, prompts: Sequence[str], paths: Sequence[str]) -> list[int]:
    """Non-padding tokens of each (prompt, path) sequence exactly as `model.pack` builds it.

    That is BOS (when the model adds one), the prompt, the path and its end-of-sequence token
    when the path ended, cut to `max_length`: what a forward pass over the pair processes.
    """
    if not prompts:
        return []
    _, attention, _ = model.pack(prompts, paths)
    return [int(n) for n in attention.sum(-1).tolist()]


def _train_mode(epochs: int | None, steps: int | None) -> None:
    if (epochs is None) == (steps is None):
        raise ValueError(f"fit: give exactly one of epochs or steps (got {epochs=}, {steps=})")
    if (epochs if epochs is not None else steps) < 0:  # type: ignore[operator]
        raise ValueError(f"fit: epochs and steps must be >= 0 (got {epochs=}, {steps=})")


def fit(
    model: ReasoningModel,
    lengths: Sequence[int],
    loss_fn: BatchLoss,
    *,
    epochs: int | None = None,
    steps: int | None = None,
    batch_size: int,
    seed: int,
    desc: str = "train",
    progress: bool = True,
    on_nonfinite: Callable[[list[int], float], None] | None = None,
    schedule: LRSchedule | None = None,
    max_nonfinite_skips: int = DEFAULT_MAX_NONFINITE_SKIPS,
    log: CountSink | None = None,
    on_step: Callable[[int], None] | None = None,
    example_tokens: Sequence[int] | None = None,
    usage: TrainUsage | None = None,
) -> list[float]:
    """Train `model` with `loss_fn` over `len(lengths)` examples; returns per-step losses.

    Two modes, give exactly one: `epochs` passes over the examples (pretraining, private SFT),
    or exactly `steps` optimizer steps whatever the number of examples (a round's training
    budget): the examples are cycled in reshuffled passes until that many steps were taken, so
    a small selection is revisited and a large one is sampled. No examples take no steps.

    A batch with a non-finite loss is skipped (no optimizer step), counted in `log` (counter
    `lada.models.guards.NONFINITE_COUNTER`) and passed to `on_nonfinite`; more than
    `max_nonfinite_skips` in this call raise `NonFiniteLossError` (0 = stop at the first). In
    `steps` mode a skipped batch does not use up a step. With a `schedule`, the rate of each
    step follows it (peak = `model.learning_rate`, restored when the call ends); without one it
    stays constant. `on_step(n)` runs after the n-th optimizer step (1-based), e.g. to evaluate
    along the way. With `usage`, each optimizer step adds one step and the `example_tokens` of
    its batch (tokens forwarded with a gradient per example; see `sequence_tokens`).
    """
    _train_mode(epochs, steps)
    if usage is not None and example_tokens is None:
        raise ValueError("fit: usage accounting needs example_tokens")
    rng = np.random.default_rng(seed)
    losses: list[float] = []
    if steps is None:
        total = optimizer_steps(len(lengths), batch_size, epochs or 0)
        batches: Iterator[list[int]] = (
            batch
            for _ in range(epochs or 0)
            for batch in length_bucketed_batches(lengths, batch_size, rng)
        )
    else:
        total = steps if len(lengths) else 0
        batches = cycled_batches(lengths, batch_size, rng)
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=False)
    model.train()
    drawn = 0
    guard = NonFiniteGuard(max_nonfinite_skips, log=log)
    for batch in batches:
        if steps is not None and len(losses) >= total:
            break
        if schedule is not None:
            # Epochs: the position is the batch drawn; steps: the optimizer step about to be taken.
            position = drawn if steps is None else len(losses)
            _set_optimizer_lr(model, model.learning_rate * schedule.factor(position, total))
        drawn += 1
        loss = loss_fn(batch)
        if not guard.check(loss, desc):
            if on_nonfinite is not None:
                on_nonfinite(batch, float(loss.detach()))
            if steps is None:
                bar.update(1)
            continue
        losses.append(model.train_step(loss))
        if usage is not None and example_tokens is not None:  # checked together on entry
            usage.add(1, sum(example_tokens[i] for i in batch))
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if on_step is not None:
            on_step(len(losses))
            model.train()
    bar.close()
    if schedule is not None:
        _set_optimizer_lr(model, model.learning_rate)
    return losses


def path_nll(model: ReasoningModel, prompts: Sequence[str], paths: Sequence[str]) -> torch.Tensor:
    """Token-mean negative log-likelihood of paths (the SFT loss), differentiable."""
    scores = model.score_paths(prompts, paths, grad=True)
    return -scores.total.sum() / scores.n_tokens.sum().clamp(min=1)


def sft_on_paths(
    model: ReasoningModel,
    prompts: Sequence[str],
    paths: Sequence[str],
    *,
    epochs: int = 1,
    steps: int | None = None,
    batch_size: int = 16,
    seed: int = 0,
    desc: str = "sft",
    progress: bool = True,
    schedule: LRSchedule | None = None,
    max_nonfinite_skips: int = DEFAULT_MAX_NONFINITE_SKIPS,
    log: CountSink | None = None,
    on_step: Callable[[int], None] | None = None,
    usage: TrainUsage | None = None,
) -> list[float]:
    """Supervised fine-tuning on (prompt, path) pairs; the loss covers path tokens only.

    `steps` (when given) replaces `epochs`: exactly that many optimizer steps (see `fit`).
    """
    lengths = [len(p) + len(q) for p, q in zip(prompts, paths, strict=True)]

    def loss_fn(batch: list[int]) -> torch.Tensor:
        return path_nll(model, [prompts[i] for i in batch], [paths[i] for i in batch])

    return fit(
        model,
        lengths,
        loss_fn,
        epochs=epochs if steps is None else None,
        steps=steps,
        batch_size=batch_size,
        seed=seed,
        desc=desc,
        progress=progress,
        schedule=schedule,
        max_nonfinite_skips=max_nonfinite_skips,
        log=log,
        on_step=on_step,
        example_tokens=sequence_tokens(model, prompts, paths) if usage is not None else None,
        usage=usage,
    )


def sft(
    model: ReasoningModel,
    items: Sequence[ReasoningItem],
    *,
    epochs: int = 1,
    batch_size: int = 16,
    seed: int = 0,
    desc: str = "sft",
    progress: bool = True,
    schedule: LRSchedule | None = None,
    max_nonfinite_skips: int = DEFAULT_MAX_NONFINITE_SKIPS,
    log: CountSink | None = None,
    on_step: Callable[[int], None] | None = None,
    usage: TrainUsage | None = None,
) -> list[float]:
    """Supervised fine-tuning on items' gold rationales."""
    return sft_on_paths(
        model,
        [render_prompt(it) for it in items],
        [gold_path(it) for it in items],
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        desc=desc,
        progress=progress,
        schedule=schedule,
        max_nonfinite_skips=max_nonfinite_skips,
        log=log,
        on_step=on_step,
        usage=usage,
    )


@dataclass
class Prediction:
    item_id: str
    domain: str
    path: str
    predicted: str | None
    correct: bool


@dataclass
class EvalResult:
    """Accuracy of greedy paths against gold answers, overall and per domain."""

    accuracy: float
    n: int
    per_domain: dict[str, float] = field(default_factory=dict)
    per_domain_n: dict[str, int] = field(default_factory=dict)
    predictions: list[Prediction] = field(default_factory=list)

    def to_dict(self, with_predictions: bool = False) -> dict:
        out = {
            "accuracy": self.accuracy,
            "n": self.n,
            "per_domain": self.per_domain,
            "per_domain_n": self.per_domain_n,
        }
        if with_predictions:
            out["predictions"] = [vars(p) for p in self.predictions]
        return out


def score_predictions(items: Sequence[ReasoningItem], paths: Sequence[str]) -> EvalResult:
    """Check each path's extracted answer against its item's gold answer."""
    preds = []
    by_domain: dict[str, list[bool]] = defaultdict(list)
    for item, path in zip(items, paths, strict=True):
        predicted = extract_answer(path, item.answer_kind)
        correct = check_answer(predicted, item.answer, item.answer_kind)
        preds.append(Prediction(item.id, item.domain, path, predicted, correct))
        by_domain[item.domain].append(correct)
    n = len(preds)
    return EvalResult(
        accuracy=sum(p.correct for p in preds) / n if n else 0.0,
        n=n,
        per_domain={d: sum(v) / len(v) for d, v in sorted(by_domain.items())},
        per_domain_n={d: len(v) for d, v in sorted(by_domain.items())},
        predictions=preds,
    )


def evaluate(
    model: ReasoningModel,
    items: Sequence[ReasoningItem],
    *,
    batch_size: int = 64,
    max_new_tokens: int = 96,
) -> EvalResult:
    """Greedy path per item; accuracy of the extracted final answer, overall and per domain."""
    paths = model.generate_paths(
        [render_prompt(it) for it in items], max_new_tokens=max_new_tokens, batch_size=batch_size
    )
    return score_predictions(items, paths)
