"""Filter input features: the receiver's view of an item plus the centroid of its cluster.

For a receiving model M and a candidate (item, path), the feature vector is

    [ z(embed_M(question + path)),  centre of z's K-means cluster ]

where `embed_M` is M's mean-pooled last hidden state and z standardises every embedding
dimension with the mean and spread of the first candidate set seen. Standardising matters:
hidden states of language models carry a few dimensions hundreds of times larger than the rest,
which would otherwise dominate both K-means distances and the first layer of the filter
networks. The scaler and the cluster centres are fitted once and then kept (they are part of the
filter state), so features of later rounds and the filter's memory live in one space. A dimension
that does not vary in the fitted set (always the case for a fit on one item) is only centred,
so features of later, different candidates stay on the embeddings' own scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from sklearn.cluster import KMeans

from lada.tasks.item import ReasoningItem
from lada.tasks.prompts import render_prompt

#: A dimension whose spread is at most this, or at most `STD_RELATIVE_FLOOR` times its mean
#: absolute value, counts as constant: it is centred and left unscaled (scale 1). Dividing by a
#: tiny spread (a fit on one item, or on identical rows) would blow every later feature up.
STD_FLOOR = 1e-6
STD_RELATIVE_FLOOR = 1e-6


class Embedder(Protocol):
    """What featurising needs from a receiver (`lada.models.wrapper.ReasoningModel` has it)."""

    def embed(self, texts: Sequence[str], *, batch_size: int) -> np.ndarray: ...


def candidate_text(item: ReasoningItem, path: str) -> str:
    """The text whose embedding represents a candidate: question (prompt) followed by path."""
    return render_prompt(item) + path


class FeatureSpace:
    """Standardiser and K-means cluster model fitted on the first candidates' embeddings."""

    def __init__(self, *, n_clusters: int, n_init: int, seed: int) -> None:
        self.n_clusters = n_clusters
        self.n_init = n_init
        self.seed = seed
        self.mean: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.centers: np.ndarray | None = None  # [C, H] in the standardised space

    @property
    def fitted(self) -> bool:
        return self.centers is not None

    @property
    def embedding_dim(self) -> int:
        self.fitted_centers()
        assert self.mean is not None
        return int(self.mean.shape[0])

    @property
    def feature_dim(self) -> int:
        return 2 * self.embedding_dim

    def fit(self, embeddings: np.ndarray) -> FeatureSpace:
        """Fit scaler and clusters (K is capped at the number of distinct embeddings)."""
        embeddings = _check_matrix(embeddings, "embeddings")
        if len(embeddings) == 0:
            raise ValueError("embeddings: cannot fit the feature space on zero candidates")
        self.mean = embeddings.mean(axis=0)
        self.scale = spread_scale(embeddings)
        z = self.standardize(embeddings)
        distinct = len(np.unique(z, axis=0))
        k = min(self.n_clusters, distinct)
        kmeans = KMeans(n_clusters=k, n_init=self.n_init, random_state=self.seed)
        kmeans.fit(z)
        self.centers = kmeans.cluster_centers_.astype(np.float64)
        return self

    def standardize(self, embeddings: np.ndarray) -> np.ndarray:
        """Per-dimension standardisation with the fitted mean and spread."""
        if self.mean is None or self.scale is None:
            raise RuntimeError("feature space: not fitted yet")
        embeddings = _check_matrix(embeddings, "embeddings", width=self.mean.shape[0])
        return (embeddings - self.mean) / self.scale

    def assign(self, z: np.ndarray) -> np.ndarray:
        """Nearest cluster of standardised points (what `KMeans.predict` computes)."""
        return _nearest(z, self.fitted_centers())

    def transform(self, embeddings: np.ndarray) -> np.ndarray:
        """Features [N, 2H]: standardised embedding, then its cluster centre (float32)."""
        centers = self.fitted_centers()
        z = self.standardize(embeddings)
        labels = self.assign(z)
        return np.concatenate([z, centers[labels]], axis=1).astype(np.float32)

    def labels_of(self, features: np.ndarray) -> np.ndarray:
        """Cluster index of each feature row, read from its centroid half."""
        centers = self.fitted_centers()
        features = _check_matrix(features, "features", width=self.feature_dim)
        return _nearest(features[:, self.embedding_dim :], centers)

    def state_dict(self) -> dict[str, Any]:
        return {
            "n_clusters": self.n_clusters,
            "n_init": self.n_init,
            "seed": self.seed,
            "mean": None if self.mean is None else self.mean.tolist(),
            "scale": None if self.scale is None else self.scale.tolist(),
            "centers": None if self.centers is None else self.centers.tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.n_clusters = int(state["n_clusters"])
        self.n_init = int(state["n_init"])
        self.seed = int(state["seed"])
        self.mean = _optional_array(state["mean"])
        self.scale = _optional_array(state["scale"])
        self.centers = _optional_array(state["centers"])

    def fitted_centers(self) -> np.ndarray:
        """The cluster centres; RuntimeError before `fit`."""
        if self.centers is None:
            raise RuntimeError("feature space: not fitted yet (call fit on the first candidates)")
        return self.centers


def spread_scale(embeddings: np.ndarray) -> np.ndarray:
    """Per-dimension divisor: the spread, or 1 where the dimension is constant in the fit.

    Constant means a spread at most `STD_FLOOR` or `STD_RELATIVE_FLOOR` of the dimension's mean
    absolute value (float noise on identical rows). Unscaled, such a dimension keeps later
    features as large as their embeddings differ, instead of that difference over ~0.
    """
    spread = embeddings.std(axis=0)
    floor = np.maximum(STD_FLOOR, STD_RELATIVE_FLOOR * np.abs(embeddings).mean(axis=0))
    return np.where(spread > floor, spread, 1.0)


def local_centroid(embeddings: np.ndarray) -> np.ndarray:
    """The receiver's local-data summary: the mean of its embeddings of its own items."""
    embeddings = _check_matrix(embeddings, "local embeddings")
    if len(embeddings) == 0:
        raise ValueError("local embeddings: need at least one local item for a centroid")
    return embeddings.mean(axis=0)


def embed_texts(receiver: Embedder, texts: Sequence[str], *, batch_size: int) -> np.ndarray:
    """The receiver's mean-pooled hidden states (float64 for stable statistics)."""
    return np.asarray(receiver.embed(list(texts), batch_size=batch_size), dtype=np.float64)


def _nearest(points: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Index of the nearest centre per point, without an [N, C, H] intermediate."""
    distances = (
        (points**2).sum(1)[:, None] - 2.0 * points @ centers.T + (centers**2).sum(1)[None, :]
    )
    return distances.argmin(axis=1)


def _check_matrix(array: np.ndarray, name: str, width: int | None = None) -> np.ndarray:
    matrix = np.asarray(array, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array [N, dim], got shape {matrix.shape}")
    if width is not None and matrix.shape[1] != width:
        raise ValueError(f"{name}: expected width {width}, got {matrix.shape[1]}")
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"{name}: contains non-finite values")
    return matrix


def _optional_array(values: Any) -> np.ndarray | None:
    return None if values is None else np.asarray(values, dtype=np.float64)
