"""Reward formulas against hand computation on small loss tables."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lada.method.rewards import (
    batch_term,
    batch_value,
    contrastive_margin,
    item_term,
    learnability_gap,
    loss_drop,
    minmax,
    mix,
    relative_decrease,
)


def test_batch_value_is_mean_exp_loss() -> None:
    assert batch_value([0.0, math.log(3.0)]) == pytest.approx(2.0)


def test_batch_term_positive_when_loss_falls() -> None:
    before = [0.0, math.log(3.0)]  # B = (1 + 3) / 2 = 2
    after = [0.0, 0.0]  # B = 1
    assert batch_term(before, after) == pytest.approx((2.0 - 1.0) / 2.0)
    assert batch_term(after, before) == pytest.approx((1.0 - 2.0) / 2.0)
    assert batch_term(before, before) == 0.0


def test_relative_decrease_is_bounded() -> None:
    assert relative_decrease(10.0, 1.0) == pytest.approx(0.9)
    assert relative_decrease(1.0, 10.0) == pytest.approx(-0.9)
    with pytest.raises(ValueError, match="positive"):
        relative_decrease(0.0, 1.0)


def test_item_term_is_minmax_per_option() -> None:
    assert item_term([2.0, 4.0, 3.0]) == pytest.approx([0.0, 1.0, 0.5])
    assert item_term([7.0, 7.0]) == pytest.approx([0.5, 0.5])


def test_raw_item_signals_by_hand() -> None:
    assert learnability_gap([-10.0, -4.0], [-12.0, -3.0]) == pytest.approx([2.0, -1.0])
    margin = contrastive_margin([-1.0, -2.0], [-3.0, -1.0], [-1.5, -2.0], [-2.5, -1.5])
    assert margin == pytest.approx([0.5 - (-0.5), 0.0 - 0.5])
    assert loss_drop([2.0, 1.0], [1.5, 1.25]) == pytest.approx([0.5, -0.25])


def test_mix_by_hand() -> None:
    sig = lambda v: 1.0 / (1.0 + math.exp(-v))  # noqa: E731
    got = mix([0.0, 1.0], r_batch=0.5, alpha=0.25)
    expected = [0.25 * sig(0.0) + 0.75 * sig(0.5), 0.25 * sig(1.0) + 0.75 * sig(0.5)]
    assert got == pytest.approx(expected)


def test_mix_extremes_of_alpha() -> None:
    r_item = np.array([0.0, 0.3, 1.0])
    assert mix(r_item, -0.4, alpha=0.0) == pytest.approx(np.full(3, 1 / (1 + math.exp(0.4))))
    assert mix(r_item, -0.4, alpha=1.0) == pytest.approx(1 / (1 + np.exp(-r_item)))
    with pytest.raises(ValueError, match="alpha"):
        mix(r_item, 0.0, alpha=1.5)


def test_minmax_and_bad_input() -> None:
    assert minmax([-1.0, 1.0, 0.0]) == pytest.approx([0.0, 1.0, 0.5])
    with pytest.raises(ValueError, match="non-finite"):
        minmax([0.0, float("nan")])
    with pytest.raises(ValueError, match="empty"):
        batch_value([])


def test_item_reward_registry_matches_the_config_and_reads_what_it_names() -> None:
    """Every kind the config accepts is registered, and each computes from the right columns."""
    from typing import get_args

    from lada.method.config import LadaConfig
    from lada.method.rewards import ITEM_REWARDS, ItemMeasures, item_reward_kind

    accepted = get_args(LadaConfig.model_fields["item_reward"].annotation)
    assert set(accepted) == set(ITEM_REWARDS)
    m = ItemMeasures(
        loss_before=np.array([2.0, 1.0]),
        loss_after=np.array([1.5, 1.2]),
        ref_positive=np.array([-4.0, -3.0]),
        ref_negative=np.array([-5.0, -2.0]),
        policy_positive=np.array([-3.0, -3.5]),
        policy_negative=np.array([-6.0, -2.5]),
        gap=np.array([0.7, -0.1]),
    )

    def raw(name: str) -> np.ndarray:
        kind = item_reward_kind(name)
        return kind.raw(*kind.columns(m))

    np.testing.assert_allclose(raw("loss_drop"), [0.5, -0.2])
    np.testing.assert_allclose(raw("margin"), [(1.0) - (-1.0), (-0.5) - (-0.5)])
    np.testing.assert_allclose(raw("gap"), [0.7, -0.1])
    assert ITEM_REWARDS["gap"].needs_gap and not ITEM_REWARDS["margin"].needs_gap
    assert ITEM_REWARDS["margin"].needs_negatives_after
    assert not ITEM_REWARDS["loss_drop"].needs_negatives_after
    unmeasured = ItemMeasures(loss_before=m.loss_before, loss_after=m.loss_after)
    with pytest.raises(ValueError, match="'margin': needs policy_positive"):
        item_reward_kind("margin").columns(unmeasured)
    with pytest.raises(ValueError, match="unknown kind 'typo'; known: gap, margin, loss_drop"):
        item_reward_kind("typo")
