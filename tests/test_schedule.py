"""Learning-rate schedule of `fit`: warmup, decay shapes, the rates the optimizer really used."""

from __future__ import annotations

import hashlib
import json
import math

import pytest
import torch
from pydantic import ValidationError

from lada.models.presets import load_model
from lada.models.pretrain import PretrainConfig
from lada.models.training import LRSchedule, fit, path_nll


def test_warmup_rises_linearly_to_the_peak() -> None:
    schedule = LRSchedule(warmup_fraction=0.2, decay="constant")
    factors = [schedule.factor(step, 20) for step in range(20)]
    warmup = int(0.2 * 20)
    assert factors[:warmup] == pytest.approx([(s + 1) / (warmup + 1) for s in range(warmup)])
    assert all(a < b for a, b in zip(factors[:warmup], factors[1 : warmup + 1], strict=True))
    assert factors[warmup:] == [1.0] * (20 - warmup)


@pytest.mark.parametrize("decay", ["linear", "cosine"])
def test_decay_falls_from_peak_to_floor(decay: str) -> None:
    schedule = LRSchedule(warmup_fraction=0.1, decay=decay, min_lr_fraction=0.25)
    total = 50
    factors = [schedule.factor(step, total) for step in range(total)]
    warmup = int(0.1 * total)
    assert factors[warmup] == pytest.approx(1.0)
    assert factors[-1] == pytest.approx(0.25)
    after = factors[warmup:]
    assert all(a >= b for a, b in zip(after, after[1:], strict=False))
    middle = warmup + (total - warmup - 1) / 2
    expected_mid = 0.625  # halfway: both shapes sit midway between peak and floor
    assert schedule.factor(int(middle), total) == pytest.approx(expected_mid, abs=0.05)


def test_cosine_matches_its_formula() -> None:
    schedule = LRSchedule(warmup_fraction=0.0, decay="cosine", min_lr_fraction=0.0)
    total = 11
    for step in range(total):
        progress = step / (total - 1)
        expected = 0.5 * (1 + math.cos(math.pi * progress))
        assert schedule.factor(step, total) == pytest.approx(expected)


def test_schedule_rejects_out_of_range_fields() -> None:
    with pytest.raises(ValidationError):
        LRSchedule(warmup_fraction=1.0)
    with pytest.raises(ValidationError):
        LRSchedule(min_lr_fraction=1.5)


def _record_rates(schedule: LRSchedule | None, peak: float) -> tuple[list[float], float]:
    """Rates the optimizer held at each step of a short `fit`, and the rate after it."""
    model = load_model("tiny-1m", device="cpu", seed=0, learning_rate=peak)
    prompts, paths = ["Q: 1 + 1 = ?\nA:"] * 6, [" 1 + 1 = 2\n#### 2\n"] * 6
    rates: list[float] = []

    def loss_fn(batch: list[int]) -> torch.Tensor:
        rates.append(model.optimizer.param_groups[0]["lr"])
        return path_nll(model, [prompts[i] for i in batch], [paths[i] for i in batch])

    fit(
        model,
        [1] * len(prompts),
        loss_fn,
        epochs=4,
        batch_size=2,
        seed=0,
        progress=False,
        schedule=schedule,
    )
    return rates, model.optimizer.param_groups[0]["lr"]


def test_fit_steps_follow_the_schedule_and_restore_the_peak() -> None:
    peak = 4e-3
    schedule = LRSchedule(warmup_fraction=0.25, decay="linear", min_lr_fraction=0.1)
    rates, after = _record_rates(schedule, peak)
    total = 4 * 3
    assert rates == pytest.approx([peak * schedule.factor(s, total) for s in range(total)])
    assert max(rates) == pytest.approx(peak)
    assert rates[-1] == pytest.approx(0.1 * peak)
    assert after == pytest.approx(peak)


def test_fit_without_schedule_keeps_the_rate_constant() -> None:
    rates, after = _record_rates(None, 2e-3)
    assert rates == pytest.approx([2e-3] * len(rates))
    assert after == pytest.approx(2e-3)


def test_pretrain_key_ignores_unset_schedule_and_changes_with_one() -> None:
    plain = PretrainConfig()
    fields = {k: v for k, v in plain.model_dump().items() if k != "schedule"}
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
    assert plain.key() == f"{plain.preset}-{digest}"  # caches made before the field still hit
    scheduled = PretrainConfig(schedule=LRSchedule())
    assert scheduled.key() != plain.key()
    assert scheduled.key() != PretrainConfig(schedule=LRSchedule(decay="linear")).key()


def test_fit_calls_on_step_after_each_optimizer_step_and_resumes_training_mode() -> None:
    """A callback that evaluates (switching to eval mode) must not leave training in eval mode."""
    model = load_model("tiny-1m", device="cpu", seed=0, learning_rate=1e-3)
    prompts, paths = ["Q: 1 + 1 = ?\nA:"] * 6, [" 1 + 1 = 2\n#### 2\n"] * 6
    seen: list[int] = []
    modes: list[bool] = []

    def loss_fn(batch: list[int]) -> torch.Tensor:
        modes.append(model.model.training)
        return path_nll(model, [prompts[i] for i in batch], [paths[i] for i in batch])

    def on_step(step: int) -> None:
        seen.append(step)
        model.eval()

    losses = fit(
        model, [1] * 6, loss_fn, epochs=2, batch_size=2, seed=0, progress=False, on_step=on_step
    )
    assert seen == list(range(1, len(losses) + 1)) == list(range(1, 7))
    assert all(modes)
