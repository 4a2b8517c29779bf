"""Scoring rule, threshold, budget and the round-1 choices, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from lada.method.selection import (
    fraction_per_cluster_select,
    nearest_clusters_select,
    proportional_quota,
    random_select,
    round1_count,
    scores_from_outputs,
    threshold_select,
)


def test_scores_are_minmax_of_f1_plus_weighted_f2() -> None:
    scores = scores_from_outputs(np.array([1.0, 2.0, 3.0]), np.array([0.0, 2.0, -1.0]), 0.5)
    # raw = [1, 3, 2.5] -> [0, 1, 0.75]
    assert scores == pytest.approx([0.0, 1.0, 0.75])


def test_scores_without_exploration_use_f1_alone() -> None:
    scores = scores_from_outputs(np.array([1.0, 2.0, 3.0]), None, 10.0)
    assert scores == pytest.approx([0.0, 0.5, 1.0])


def test_scores_without_spread_all_pass() -> None:
    assert scores_from_outputs(np.array([0.3]), np.array([0.1]), 1.0) == pytest.approx([1.0])
    flat = scores_from_outputs(np.array([2.0, 2.0]), None, 1.0)
    assert threshold_select(flat, 0.5, None).tolist() == [0, 1]


def test_threshold_is_strict_and_results_are_best_first() -> None:
    scores = np.array([0.2, 0.6, 0.9, 0.5, 0.7])
    assert threshold_select(scores, 0.5, None).tolist() == [2, 4, 1]


def test_budget_caps_the_top_items() -> None:
    scores = np.array([0.2, 0.6, 0.9, 0.5, 0.7])
    assert threshold_select(scores, 0.5, 2).tolist() == [2, 4]
    assert threshold_select(scores, 0.5, 10).tolist() == [2, 4, 1]
    assert threshold_select(scores, 0.0, 4).tolist() == [2, 4, 1, 3]


def test_round1_count() -> None:
    assert round1_count(10, None, 0.25) == 3  # ceil(2.5)
    assert round1_count(10, 4, 0.25) == 4
    assert round1_count(10, 50, 0.25) == 10
    assert round1_count(0, 5, 0.5) == 0


def test_nearest_clusters_fill_whole_clusters_then_nearest_points() -> None:
    points = np.array([[0.0], [0.1], [5.0], [5.2], [5.4], [10.0]])
    labels = np.array([0, 0, 1, 1, 1, 2])
    centers = np.array([[0.05], [5.2], [10.0]])
    target = np.array([6.0])
    # cluster 1 is nearest (all three), then cluster 2 (10 is nearer to 6 than 0.05 is).
    assert nearest_clusters_select(points, labels, centers, target, 4).tolist() == [4, 3, 2, 5]
    # a partial cluster gives its points nearest to the target first
    assert nearest_clusters_select(points, labels, centers, target, 2).tolist() == [4, 3]


def test_proportional_quota_sums_to_total() -> None:
    quota = proportional_quota(np.array([10, 5, 5]), 8)
    assert quota.tolist() == [4, 2, 2]
    assert proportional_quota(np.array([1, 1, 1]), 2).sum() == 2


def test_fraction_per_cluster_takes_a_share_of_each_cluster() -> None:
    labels = np.array([0] * 10 + [1] * 4 + [2] * 1)
    chosen = fraction_per_cluster_select(labels, 0.5, None, np.random.default_rng(0))
    assert np.bincount(labels[chosen], minlength=3).tolist() == [5, 2, 1]
    assert len(set(chosen.tolist())) == len(chosen)
    capped = fraction_per_cluster_select(labels, 0.5, 5, np.random.default_rng(0))
    assert len(capped) == 5
    assert set(labels[capped].tolist()) >= {0, 1}


def test_random_select_is_distinct_and_seeded() -> None:
    first = random_select(20, 7, np.random.default_rng(3))
    again = random_select(20, 7, np.random.default_rng(3))
    assert len(set(first.tolist())) == 7
    assert first.tolist() == again.tolist()
    assert len(random_select(5, 9, np.random.default_rng(0))) == 5
