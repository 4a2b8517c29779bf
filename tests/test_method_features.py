"""The feature space's standardiser: constant dimensions are centred, never blown up."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lada.method.features import (
    FeatureSpace,
    candidate_text,
    embed_texts,
    local_centroid,
    spread_scale,
)
from lada.tasks.item import ReasoningItem
from lada.tasks.prompts import render_prompt


def _space() -> FeatureSpace:
    return FeatureSpace(n_clusters=4, n_init=1, seed=0)


def test_a_fit_on_one_embedding_keeps_later_features_bounded() -> None:
    fitted = np.array([[1.0, -2.0, 0.5, 300.0]])
    later = np.array([[1.5, -1.0, 3.0, 280.0], [0.0, 0.0, 0.0, 0.0]])
    space = _space().fit(fitted)
    features = space.transform(later)
    assert np.all(np.isfinite(features))
    z = features[:, : space.embedding_dim]
    # unscaled: each standardised value is just the distance from the one fitted embedding
    np.testing.assert_allclose(z, later - fitted, rtol=1e-6)
    assert np.abs(z).max() <= np.abs(later - fitted).max() + 1e-6


def test_identical_rows_and_float_noise_count_as_constant() -> None:
    rows = np.repeat(np.array([[2.0, -5.0, 1e3]]), 3, axis=0)
    rows[1] += 1e-9  # noise far below the floors
    np.testing.assert_array_equal(spread_scale(rows), np.ones(3))
    space = _space().fit(rows)
    z = space.standardize(np.array([[3.0, -5.0, 1e3 + 1.0]]))
    assert np.abs(z).max() <= 1.0 + 1e-6


def test_varying_dimensions_are_still_standardised() -> None:
    rng = np.random.default_rng(0)
    rows = rng.normal(loc=[0.0, 50.0], scale=[1.0, 20.0], size=(64, 2))
    rows = np.concatenate([rows, np.full((64, 1), 7.0)], axis=1)  # one constant dimension
    scale = spread_scale(rows)
    np.testing.assert_allclose(scale[:2], rows[:, :2].std(axis=0))
    assert scale[2] == 1.0
    z = _space().fit(rows).standardize(rows)
    np.testing.assert_allclose(z[:, :2].std(axis=0), 1.0, rtol=1e-9)


def _blobs() -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    return np.concatenate([c + rng.normal(scale=0.2, size=(5, 2)) for c in centres])


def test_local_centroid_is_the_mean_of_at_least_one_embedding() -> None:
    np.testing.assert_allclose(local_centroid(np.array([[1.0, 2.0], [3.0, 6.0]])), [2.0, 4.0])
    np.testing.assert_allclose(local_centroid(np.array([[1.0, 2.0]])), [1.0, 2.0])
    with pytest.raises(
        ValueError, match="^local embeddings: need at least one local item for a centroid$"
    ):
        local_centroid(np.zeros((0, 2)))
    with pytest.raises(ValueError, match=r"^local embeddings: expected a 2-D array \[N, dim\]"):
        local_centroid(np.zeros(2))


def test_features_are_the_standardised_embedding_and_its_centre() -> None:
    rows = _blobs()
    space = FeatureSpace(n_clusters=3, n_init=2, seed=0).fit(rows)
    assert space.fitted and space.embedding_dim == 2 and space.feature_dim == 4
    features = space.transform(rows)
    assert features.shape == (15, 4) and features.dtype == np.float32
    z = space.standardize(rows)
    np.testing.assert_allclose(features[:, :2], z, rtol=1e-6)
    labels = space.labels_of(features)
    np.testing.assert_allclose(features[:, 2:], space.fitted_centers()[labels], rtol=1e-6)
    # nearest centre by brute force, and one cluster per blob
    brute = ((z[:, None, :] - space.fitted_centers()[None]) ** 2).sum(-1).argmin(1)
    assert space.assign(z).tolist() == brute.tolist() == labels.tolist()
    assert len(set(labels.tolist())) == 3
    assert all(len(set(labels[i : i + 5].tolist())) == 1 for i in (0, 5, 10))


def test_clusters_are_capped_at_the_distinct_embeddings() -> None:
    rows = np.array([[0.0, 1.0], [0.0, 1.0], [5.0, 1.0], [5.0, 1.0], [5.0, 1.0]])
    space = FeatureSpace(n_clusters=4, n_init=1, seed=0).fit(rows)
    assert space.fitted_centers().shape == (2, 2)


def test_feature_space_state_round_trips_through_json() -> None:
    space = FeatureSpace(n_clusters=3, n_init=2, seed=5).fit(_blobs())
    state = json.loads(json.dumps(space.state_dict()))
    restored = FeatureSpace(n_clusters=1, n_init=1, seed=0)
    restored.load_state_dict(state)
    assert (restored.n_clusters, restored.n_init, restored.seed) == (3, 2, 5)
    np.testing.assert_array_equal(restored.transform(_blobs()), space.transform(_blobs()))
    empty = FeatureSpace(n_clusters=2, n_init=1, seed=0)
    empty.load_state_dict(FeatureSpace(n_clusters=2, n_init=1, seed=0).state_dict())
    assert not empty.fitted and empty.mean is None and empty.scale is None


def test_an_unfitted_space_and_bad_input_are_refused() -> None:
    space = _space()
    assert not space.fitted
    with pytest.raises(RuntimeError, match="^feature space: not fitted yet$"):
        space.standardize(np.zeros((1, 2)))
    with pytest.raises(RuntimeError, match=r"^feature space: not fitted yet \(call fit"):
        space.transform(np.zeros((1, 2)))
    with pytest.raises(ValueError, match="^embeddings: cannot fit the feature space on zero"):
        space.fit(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="^embeddings: contains non-finite values$"):
        space.fit(np.array([[0.0, np.nan]]))
    space.fit(_blobs())
    with pytest.raises(ValueError, match="^embeddings: expected width 2, got 3$"):
        space.standardize(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="^features: expected width 4, got 2$"):
        space.labels_of(np.zeros((1, 2)))


def test_candidate_text_and_embeddings() -> None:
    item = ReasoningItem("q", "math", "What is 2 + 3?", "5", "numeric")
    assert candidate_text(item, " 2 + 3 = 5\n#### 5\n") == render_prompt(item) + (
        " 2 + 3 = 5\n#### 5\n"
    )
    seen: list[tuple[list[str], int]] = []

    class Receiver:
        def embed(self, texts: list[str], *, batch_size: int) -> np.ndarray:
            seen.append((texts, batch_size))
            return np.ones((len(texts), 3), dtype=np.float32)

    out = embed_texts(Receiver(), ("a", "b"), batch_size=7)
    assert seen == [(["a", "b"], 7)]
    assert out.shape == (2, 3) and out.dtype == np.float64


def test_nearest_centre_accounts_for_the_centres_own_size() -> None:
    space = _space()
    centres = [[0.0, 0.0], [10.0, 0.0]]
    space.load_state_dict(
        {
            "n_clusters": 2,
            "n_init": 1,
            "seed": 0,
            "mean": [0.0, 0.0],
            "scale": [1.0, 1.0],
            "centers": centres,
        }
    )
    points = np.array([[4.0, 0.0], [6.0, 0.0], [-1.0, 3.0], [11.0, -3.0]])
    assert space.assign(points).tolist() == [0, 1, 0, 1]


def test_spread_is_judged_against_the_dimensions_magnitude() -> None:
    # +-0.1 around a million is float noise (floor 1e-6 * 1e6 = 1); +-0.3 around 0 is signal
    rows = np.array([[1e6 - 0.1, -0.3], [1e6 + 0.1, 0.3]])
    np.testing.assert_allclose(spread_scale(rows), [1.0, 0.3])
    # a spread of exactly STD_FLOOR is still constant ("at most")
    assert spread_scale(np.array([[-1e-6], [1e-6]])).tolist() == [1.0]


def test_clusters_are_seeded() -> None:
    rows = np.random.default_rng(0).uniform(size=(60, 3))  # no clear clusters: init matters
    first = FeatureSpace(n_clusters=4, n_init=1, seed=3).fit(rows).fitted_centers()
    again = FeatureSpace(n_clusters=4, n_init=1, seed=3).fit(rows).fitted_centers()
    np.testing.assert_array_equal(first, again)
