"""The feature space's standardiser: constant dimensions are centred, never blown up."""

from __future__ import annotations

import numpy as np

from lada.method.features import FeatureSpace, spread_scale


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
