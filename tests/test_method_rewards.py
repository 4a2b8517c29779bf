"""Reward formulas against hand computation on small loss tables."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import pytest

from lada.method.rewards import (
    batch_term,
    batch_value,
    contrastive_margin,
    finite_rows,
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
    with pytest.raises(ValueError, match="^losses: empty; B needs at least one item$"):
        batch_value([])
    with pytest.raises(ValueError, match=r"^values: expected a 1-D array, got shape \(1, 1\)$"):
        minmax([[1.0]])


def test_batch_value_overflows_to_inf_quietly() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow warning would be an error here
        assert batch_value([0.0, 1000.0]) == math.inf  # callers check for inf themselves


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


def test_relative_decrease_refuses_a_zero_current_value() -> None:
    with pytest.raises(ValueError, match="positive"):
        relative_decrease(1.0, 0.0)


NAN = float("nan")


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: batch_value([NAN]), "losses"),
        (lambda: minmax([NAN]), "values"),
        (lambda: learnability_gap([NAN], [0.0]), "sender_logprobs"),
        (lambda: learnability_gap([0.0], [NAN]), "receiver_logprobs"),
        (lambda: contrastive_margin([NAN], [0.0], [0.0], [0.0]), "policy_pos"),
        (lambda: contrastive_margin([0.0], [NAN], [0.0], [0.0]), "policy_neg"),
        (lambda: contrastive_margin([0.0], [0.0], [NAN], [0.0]), "ref_pos"),
        (lambda: contrastive_margin([0.0], [0.0], [0.0], [NAN]), "ref_neg"),
        (lambda: loss_drop([NAN], [0.0]), "losses_before"),
        (lambda: loss_drop([0.0], [NAN]), "losses_after"),
        (lambda: mix([NAN], 0.0, alpha=0.5), "r_item"),
    ],
)
def test_a_non_finite_input_is_named_in_the_error(
    call: Callable[[], object], argument: str
) -> None:
    """The error says which of several inputs holds the NaN (a caller passes four at once)."""
    with pytest.raises(ValueError, match=rf"^{argument}: contains non-finite values$"):
        call()


@pytest.mark.parametrize(
    "call",
    [
        lambda: learnability_gap([0.0, 1.0], [0.0]),
        lambda: contrastive_margin([0.0, 1.0], [0.0, 1.0], [0.0], [0.0, 1.0]),
        lambda: loss_drop([0.0], [0.0, 1.0]),
    ],
)
def test_per_item_columns_of_different_lengths_are_refused(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        call()


def test_minmax_of_one_value_or_none() -> None:
    assert minmax([3.0]) == pytest.approx([0.5])  # one item: nothing to spread
    assert minmax([]).shape == (0,)


def test_finite_rows_needs_every_column_finite() -> None:
    mask = finite_rows([NAN, 1.0, 2.0], [1.0, 1.0, float("inf")])
    assert mask.tolist() == [False, True, False]
    assert finite_rows().shape == (0,)


@pytest.mark.parametrize(
    "columns",
    [([1.0, NAN], [1.0]), ([[1.0]],)],  # lengths differ (no broadcasting), or not 1-D
)
def test_finite_rows_refuses_columns_of_other_shapes(columns: tuple[list, ...]) -> None:
    with pytest.raises(ValueError, match="^columns: expected 1-D arrays of one length"):
        finite_rows(*columns)
