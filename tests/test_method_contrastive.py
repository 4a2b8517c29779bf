"""Contrastive distillation: loss value by hand, gradient direction, one forward pass."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from lada.method.config import LadaConfig
from lada.method.contrastive import (
    DistillBatch,
    PairLogprobs,
    contrastive_loss,
    distillation_loss,
    mean_nll,
    path_statistics,
    select_logprobs,
)
from lada.models.presets import load_model
from lada.models.wrapper import ReasoningModel

PROMPTS = ("Q: What is 2 + 3?\nA:", "Q: What is 4 + 4?\nA:")
POSITIVES = (" 2 + 3 = 5\n#### 5\n", " 4 + 4 = 8\n#### 8\n")
NEGATIVES = (" 2 + 3 = 6\n#### 6\n", " 4 + 4 = 9\n#### 9\n")


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    # Tiny models: thread hand-offs cost more than they save on a shared 2-core machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def receiver() -> ReasoningModel:
    return load_model("tiny-1m", device="cpu", seed=0, learning_rate=3e-3)


def _reference(model: ReasoningModel, normalize: bool = False) -> PairLogprobs:
    logprobs = model.sequence_logprobs(
        list(PROMPTS) * 2, list(POSITIVES + NEGATIVES), normalize=normalize
    )
    return PairLogprobs(logprobs[:2], logprobs[2:])


def _batch(ref: PairLogprobs) -> DistillBatch:
    return DistillBatch(PROMPTS, POSITIVES, NEGATIVES, ref)


def test_contrastive_loss_by_hand() -> None:
    policy_pos = torch.tensor([-1.0, -2.0])
    policy_neg = torch.tensor([-3.0, -1.0])
    ref_pos = torch.tensor([-1.5, -2.0])
    ref_neg = torch.tensor([-2.5, -1.5])
    # beta = 2: deltas 2 * (0.5 + 0.5) = 2 and 2 * (0 - 0.5) = -1
    expected = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(1.0))) / 2
    got = contrastive_loss(policy_pos, policy_neg, ref_pos, ref_neg, beta=2.0)
    assert float(got) == pytest.approx(expected)


def test_contrastive_loss_at_the_reference_is_log_two() -> None:
    values = torch.tensor([-4.0, -7.0])
    assert float(contrastive_loss(values, values + 1, values, values + 1, 1.0)) == pytest.approx(
        math.log(2.0)
    )


def test_contrastive_gradient_favours_the_positive() -> None:
    policy_pos = torch.tensor([-2.0], requires_grad=True)
    policy_neg = torch.tensor([-2.0], requires_grad=True)
    loss = contrastive_loss(policy_pos, policy_neg, torch.tensor([-2.0]), torch.tensor([-2.0]), 1)
    loss.backward()
    assert policy_pos.grad is not None and policy_neg.grad is not None
    assert float(policy_pos.grad) < 0 < float(policy_neg.grad)


def test_one_forward_pass_for_positives_and_negatives(receiver: ReasoningModel) -> None:
    calls: list[tuple[int, bool]] = []
    original = receiver.score_paths

    def counting(prompts, paths, *, grad=False):  # type: ignore[no-untyped-def]
        calls.append((len(paths), grad))
        return original(prompts, paths, grad=grad)

    receiver.score_paths = counting  # type: ignore[method-assign]
    ref = PairLogprobs(torch.zeros(2), torch.zeros(2))
    distillation_loss(receiver, _batch(ref), ref, LadaConfig())
    assert calls == [(4, True)]
    calls.clear()
    distillation_loss(receiver, _batch(ref), ref, LadaConfig(cd_weight=0.0))
    assert calls == [(2, True)]  # SFT only: the negatives are not scored at all


def test_loss_parts_match_a_direct_computation(receiver: ReasoningModel) -> None:
    ref = _reference(receiver)
    config = LadaConfig(cd_weight=0.7, beta=0.5)
    parts = distillation_loss(receiver, _batch(ref), ref, config)
    scores = receiver.score_paths(list(PROMPTS), list(POSITIVES))
    sft = -scores.total.sum() / scores.n_tokens.sum()
    assert float(parts.sft) == pytest.approx(float(sft), rel=1e-5)
    # at the reference weights every delta is 0: L_CD = log 2, margin = 0
    assert float(parts.cd) == pytest.approx(math.log(2.0), abs=1e-4)
    assert float(parts.margin) == pytest.approx(0.0, abs=1e-4)
    assert float(parts.total.detach()) == pytest.approx(float(sft) + 0.7 * math.log(2.0), rel=1e-4)
    assert parts.total.requires_grad and not parts.cd.requires_grad


def test_normalised_logprobs_use_per_token_means(receiver: ReasoningModel) -> None:
    ref = _reference(receiver, normalize=True)
    parts = distillation_loss(receiver, _batch(ref), ref, LadaConfig(normalize_logprobs=True))
    assert float(parts.cd) == pytest.approx(math.log(2.0), abs=1e-4)
    # summed policy log-probs against per-token-mean references: the deltas are far from 0
    mismatched = distillation_loss(receiver, _batch(ref), ref, LadaConfig())
    assert float(mismatched.cd) != pytest.approx(math.log(2.0), abs=1e-2)


def test_a_few_steps_raise_positive_over_negative(receiver: ReasoningModel) -> None:
    ref = _reference(receiver)
    gap_before = (ref.positive - ref.negative).sum()
    config = LadaConfig(cd_weight=1.0)
    for _ in range(5):
        receiver.train_step(distillation_loss(receiver, _batch(ref), ref, config).total)
    after = _reference(receiver)
    assert float((after.positive - after.negative).sum()) > float(gap_before) + 0.5
    parts = distillation_loss(receiver, _batch(ref), ref, config)
    assert float(parts.margin) > 0
    assert float(parts.cd) < math.log(2.0)


def test_contrastive_term_alone_moves_the_margin(receiver: ReasoningModel) -> None:
    """Without the SFT term the margin still grows: the direction comes from L_CD itself."""
    ref = _reference(receiver)
    for _ in range(5):
        scores = receiver.score_paths(list(PROMPTS) * 2, list(POSITIVES + NEGATIVES), grad=True)
        loss = contrastive_loss(
            scores.total[:2], scores.total[2:], ref.positive, ref.negative, beta=1.0
        )
        receiver.train_step(loss)
    after = _reference(receiver)
    margin = (after.positive - ref.positive) - (after.negative - ref.negative)
    assert bool((margin > 0).all())


def test_path_statistics_match_the_model(receiver: ReasoningModel) -> None:
    totals, counts = path_statistics(receiver, PROMPTS, POSITIVES, batch_size=1)
    expected = receiver.sequence_logprobs(list(PROMPTS), list(POSITIVES))
    assert totals == pytest.approx(expected.double().numpy(), rel=1e-5)
    assert counts.tolist() == [float(len(p) + 1) for p in POSITIVES]  # chars + end token


def test_empty_batch_is_rejected(receiver: ReasoningModel) -> None:
    empty = PairLogprobs(torch.zeros(0), torch.zeros(0))
    with pytest.raises(ValueError, match="^batch: empty; nothing to compute a loss on$"):
        distillation_loss(receiver, DistillBatch((), (), (), empty), empty, LadaConfig())


def test_pair_logprobs_must_be_equal_1d_shapes() -> None:
    with pytest.raises(ValueError, match=r"^logprobs: positive \(2,\) and negative \(3,\)"):
        PairLogprobs(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="must be equal 1-D shapes"):
        PairLogprobs(torch.zeros(2, 1), torch.zeros(2, 1))


def test_reference_logprobs_must_match_the_batch(receiver: ReasoningModel) -> None:
    wrong = PairLogprobs(torch.zeros(3), torch.zeros(3))
    batch = _batch(PairLogprobs(torch.zeros(2), torch.zeros(2)))
    with pytest.raises(ValueError, match=r"^ref_logprobs: \(3,\) for a batch of 2 pairs$"):
        distillation_loss(receiver, batch, wrong, LadaConfig())


def test_sft_only_has_no_contrastive_parts(receiver: ReasoningModel) -> None:
    ref = _reference(receiver)
    parts = distillation_loss(receiver, _batch(ref), ref, LadaConfig(cd_weight=0.0))
    scores = receiver.score_paths(list(PROMPTS), list(POSITIVES))
    sft = float(-scores.total.sum() / scores.n_tokens.sum())
    assert parts.as_floats() == pytest.approx({"total": sft, "sft": sft, "cd": 0.0, "margin": 0.0})
    assert parts.total.requires_grad and not parts.sft.requires_grad


def test_margin_and_parts_after_a_step_by_hand(receiver: ReasoningModel) -> None:
    ref = _reference(receiver)
    config = LadaConfig(cd_weight=1.0, beta=0.5)
    receiver.train_step(distillation_loss(receiver, _batch(ref), ref, config).total)
    parts = distillation_loss(receiver, _batch(ref), ref, config)
    now = _reference(receiver)
    delta = (now.positive - ref.positive) - (now.negative - ref.negative)
    sft = -now.positive.sum() / receiver.score_paths(list(PROMPTS), list(POSITIVES)).n_tokens.sum()
    cd = -torch.nn.functional.logsigmoid(0.5 * delta).mean()
    expected = {
        "total": float(sft + cd),
        "sft": float(sft),
        "cd": float(cd),
        "margin": float(delta.mean()),
    }
    assert parts.as_floats() == pytest.approx(expected, rel=1e-4, abs=1e-5)


def test_path_statistics_leave_the_training_mode_as_it_was(receiver: ReasoningModel) -> None:
    for training in (True, False):
        receiver.model.train(training)
        path_statistics(receiver, PROMPTS, POSITIVES, batch_size=2)
        assert receiver.model.training is training
    totals, counts = path_statistics(receiver, (), (), batch_size=2)
    assert totals.shape == counts.shape == (0,)


def test_per_item_logprobs_and_losses_by_hand() -> None:
    totals, counts = np.array([-6.0, -3.0]), np.array([3.0, 0.0])  # a path with no token
    assert select_logprobs(totals, counts, normalize=False).tolist() == [-6.0, -3.0]
    assert select_logprobs(totals, counts, normalize=True).tolist() == [-2.0, -3.0]
    assert mean_nll(totals, counts).tolist() == [2.0, 3.0]
