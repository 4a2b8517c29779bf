"""Scoring rule, threshold, budget and the round-1 choices, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from lada.method.selection import (
    MatchCountError,
    fraction_per_cluster_select,
    matched_count,
    nearest_clusters_select,
    proportional_quota,
    random_select,
    round1_count,
    scores_from_outputs,
    subset_select,
    threshold_select,
    top_count,
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


def test_threshold_select_keeps_candidate_order_among_many_ties() -> None:
    scores = np.random.default_rng(0).integers(0, 4, size=200) / 3.0  # 0, 1/3, 2/3, 1
    expected = [i for value in (3, 2) for i in np.flatnonzero(scores == value / 3.0)]
    assert threshold_select(scores, 0.5, None).tolist() == expected


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
    assert round1_count(10, None, 0.01) == 1  # at least one
    assert round1_count(10, 1, 0.5) == 1


def test_nearest_clusters_fill_whole_clusters_then_nearest_points() -> None:
    points = np.array([[0.0], [0.1], [5.0], [5.2], [5.4], [10.0]])
    labels = np.array([0, 0, 1, 1, 1, 2])
    centers = np.array([[0.05], [5.2], [10.0]])
    target = np.array([6.0])
    # cluster 1 is nearest (all three), then cluster 2 (10 is nearer to 6 than 0.05 is).
    assert nearest_clusters_select(points, labels, centers, target, 4).tolist() == [4, 3, 2, 5]
    # a partial cluster gives its points nearest to the target first
    assert nearest_clusters_select(points, labels, centers, target, 2).tolist() == [4, 3]
    # ... and only as many as are still wanted: one of cluster 0's two points
    assert nearest_clusters_select(points, labels, centers, target, 5).tolist() == [4, 3, 2, 5, 1]
    none = nearest_clusters_select(points, labels, centers, target, 0)
    assert none.shape == (0,) and none.dtype == np.int64


def test_proportional_quota_sums_to_total() -> None:
    quota = proportional_quota(np.array([10, 5, 5]), 8)
    assert quota.tolist() == [4, 2, 2] and quota.dtype.kind == "i"
    assert proportional_quota(np.array([1, 1, 1]), 2).sum() == 2


def test_proportional_quota_gives_the_rest_by_largest_remainder() -> None:
    # exact shares [3, 1.5, 0.5]: the first whole item goes to the larger remainder, in order
    assert proportional_quota(np.array([6, 3, 1]), 5).tolist() == [3, 2, 0]
    assert proportional_quota(np.array([1, 0]), 1).tolist() == [1, 0]
    assert proportional_quota(np.array([0, 0]), 3).tolist() == [0, 0]  # nothing to split
    assert proportional_quota(np.array([1, 1]), 5).tolist() == [1, 1]  # never more than a group


def test_fraction_per_cluster_takes_a_share_of_each_cluster() -> None:
    labels = np.array([0] * 10 + [1] * 4 + [2] * 1)
    chosen = fraction_per_cluster_select(labels, 0.5, None, np.random.default_rng(0))
    assert np.bincount(labels[chosen], minlength=3).tolist() == [5, 2, 1]
    assert len(set(chosen.tolist())) == len(chosen)
    capped = fraction_per_cluster_select(labels, 0.5, 5, np.random.default_rng(0))
    assert len(capped) == 5
    assert set(labels[capped].tolist()) >= {0, 1}


def test_fraction_per_cluster_keeps_its_quotas_when_they_fit_the_budget() -> None:
    labels = np.array([0] * 9 + [1])
    # quotas ceil(0.2 * [9, 1]) = [2, 1] fit a budget of 3: every cluster keeps an item
    chosen = fraction_per_cluster_select(labels, 0.2, 3, np.random.default_rng(0))
    assert np.bincount(labels[chosen], minlength=2).tolist() == [2, 1]
    nothing = fraction_per_cluster_select(
        np.zeros(0, dtype=np.int64), 0.5, None, np.random.default_rng(0)
    )
    assert nothing.shape == (0,) and nothing.dtype == np.int64


def test_random_select_is_distinct_and_seeded() -> None:
    first = random_select(20, 7, np.random.default_rng(3))
    again = random_select(20, 7, np.random.default_rng(3))
    assert len(set(first.tolist())) == 7
    assert first.tolist() == again.tolist()
    assert len(random_select(5, 9, np.random.default_rng(0))) == 5


def test_matched_count_reads_rounds_from_one() -> None:
    counts = {"llm->slm_0": [4, 0, 7], "llm->slm_1": [2]}
    assert matched_count(counts, "llm->slm_0", 1) == 4
    assert matched_count(counts, "llm->slm_0", 2) == 0
    assert matched_count(counts, "llm->slm_0", 3) == 7
    assert matched_count(counts, "llm->slm_1", 1) == 2


@pytest.mark.parametrize(
    ("pair", "round_idx", "message"),
    [
        ("llm->slm_9", 1, r"pair 'llm->slm_9' \(round 1\)"),
        ("llm->slm_0", 3, "pair 'llm->slm_0' in round 3"),
        ("llm->slm_0", 0, "pair 'llm->slm_0' in round 0"),
    ],
)
def test_matched_count_names_a_missing_pair_or_round(
    pair: str, round_idx: int, message: str
) -> None:
    with pytest.raises(MatchCountError, match=message):
        matched_count({"llm->slm_0": [4, 5]}, pair, round_idx)


def test_matched_count_lists_the_pairs_it_has() -> None:
    counts = {"llm->slm_1": [1], "llm->slm_0": [4, 5]}
    with pytest.raises(MatchCountError, match=r"it has: llm->slm_0, llm->slm_1$"):
        matched_count(counts, "llm->slm_9", 1)
    with pytest.raises(MatchCountError, match=r"it has: none$"):
        matched_count({}, "llm->slm_9", 1)


def test_top_count_keeps_candidate_order_among_many_ties() -> None:
    scores = np.random.default_rng(0).integers(0, 3, size=200).astype(np.float64)
    expected = [i for value in (2, 1, 0) for i in np.flatnonzero(scores == value)]
    assert top_count(scores, 120).tolist() == expected[:120]


def test_top_count_is_best_first_with_non_finite_last() -> None:
    scores = np.array([0.5, np.nan, 2.0, -1.0, 2.0, np.inf])
    assert top_count(scores, 3).tolist() == [2, 4, 0]  # tie 2.0: candidate order
    assert top_count(scores, 6).tolist()[-2:] == [1, 5]  # nan and inf after every finite
    assert top_count(scores, 10).tolist() == top_count(scores, 6).tolist()
    assert top_count(scores, 0).tolist() == []


def test_subset_select_takes_only_eligible_items() -> None:
    eligible = np.array([True, False, True, True, False, True, True])
    assert subset_select(eligible, None, np.random.default_rng(0)).tolist() == [0, 2, 3, 5, 6]
    assert subset_select(eligible, 9, np.random.default_rng(0)).tolist() == [0, 2, 3, 5, 6]
    assert subset_select(eligible, 5, np.random.default_rng(0)).tolist() == [0, 2, 3, 5, 6]
    picked = subset_select(eligible, 3, np.random.default_rng(1))
    assert len(picked) == len(set(picked.tolist())) == 3
    assert set(picked.tolist()) <= {0, 2, 3, 5, 6}
    assert picked.tolist() == subset_select(eligible, 3, np.random.default_rng(1)).tolist()
    assert subset_select(np.zeros(4, dtype=bool), 2, np.random.default_rng(0)).tolist() == []
