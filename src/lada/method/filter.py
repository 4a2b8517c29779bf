"""The model learnability-aware data filter of one directed pair (F_k or G_k in the paper).

A filter lives on the receiving side of its pair and sees only what that side may see: public
candidates as the receiver embeds them, the receiver's own local-data centroid, and the rewards
the receiver's losses produced. It is a contextual bandit: candidates are arms, features are
contexts, rewards arrive only for the arms it selected.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lada.method.config import LadaConfig
from lada.method.features import FeatureSpace
from lada.method.networks import (
    RewardMLP,
    exploration_dim,
    exploration_features,
    fit_regressor,
)
from lada.method.selection import (
    fraction_per_cluster_select,
    nearest_clusters_select,
    random_select,
    round1_count,
    scores_from_outputs,
    threshold_select,
)

STATE_FORMAT = 1


@dataclass(frozen=True)
class FilterChoice:
    """The result of one selection: positions in the candidate list, best first."""

    indices: np.ndarray
    scores: np.ndarray | None  # min-max scores of every candidate, when the networks scored
    #: 'scored', 'exploit_only', 'random', 'all', 'round1_<strategy>', 'round1_random', and
    #: from `LadaPlugin.select` 'oracle' and 'rho_loss'
    strategy: str


@dataclass(frozen=True)
class FilterFit:
    """What one `update` did: final-epoch losses of f1 and f2, and the memory size."""

    f1_loss: float
    f2_loss: float
    n_memory: int


class LearnabilityFilter:
    """Scores public candidates for one receiver and learns from the rewards it observes.

    Lifecycle per round: `featurize` the candidates' receiver embeddings (the first call fits the
    standardiser and the K-means clusters), `select` (round 1: clusters near the receiver's local
    centroid; later: min-max scores of f1 + w*f2 above the threshold, capped by the budget),
    then, once the receiver has trained on the selection, `update` with the rewards.
    """

    def __init__(
        self, config: LadaConfig, *, name: str = "", device: str | torch.device = "cpu"
    ) -> None:
        self.config = config
        self.name = name
        self.device = torch.device(device)
        self.space = FeatureSpace(
            n_clusters=config.n_clusters, n_init=config.kmeans_n_init, seed=config.seed
        )
        self.in_dim: int | None = None
        self.f1: RewardMLP | None = None
        self.f2: RewardMLP | None = None
        self.f1_optimizer: torch.optim.Optimizer | None = None
        self.f2_optimizer: torch.optim.Optimizer | None = None
        self.memory_features = np.zeros((0, 0), dtype=np.float32)
        self.memory_rewards = np.zeros(0, dtype=np.float64)
        self.explore_inputs = np.zeros((0, 0), dtype=np.float32)
        self.explore_targets = np.zeros(0, dtype=np.float64)
        self.rounds_trained = 0
        self.rng = np.random.default_rng(config.seed)
        self.torch_generator = torch.Generator().manual_seed(config.seed)

    # ---------------------------------------------------------------- features
    @property
    def is_trained(self) -> bool:
        """Whether any rewards were observed (round 1 is over)."""
        return self.rounds_trained > 0

    @property
    def n_observed(self) -> int:
        return len(self.memory_rewards)

    def featurize(self, embeddings: np.ndarray) -> np.ndarray:
        """Features of candidates from the receiver's embeddings; fits the space on first use."""
        if not self.space.fitted:
            self.space.fit(embeddings)
        features = self.space.transform(embeddings)
        self._ensure_networks(features.shape[1])
        return features

    # ---------------------------------------------------------------- scoring
    def network_outputs(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw f1(x) and f2(phi(x)) per candidate."""
        x = self._to_tensor(self._check_features(features))
        f1, f2 = self._networks()
        f1.eval()
        f2.eval()
        with torch.no_grad():
            exploit = f1(x)[0]
        phi = exploration_features(
            f1, x, self.config.exploration_input, self.config.gradient_pool_size
        )
        with torch.no_grad():
            explore = f2(phi)[0]
        return exploit.cpu().double().numpy(), explore.cpu().double().numpy()

    def score(self, features: np.ndarray, *, explore: bool | None = None) -> np.ndarray:
        """Min-max-normalised f1 + w*f2 over the given candidates, in [0, 1].

        `explore=None` follows the config (f1 alone for `selection_mode='exploit_only'`).
        """
        if explore is None:
            explore = self.config.selection_mode != "exploit_only"
        exploit, exploration = self.network_outputs(features)
        bad = ~(np.isfinite(exploit) & np.isfinite(exploration))
        if bad.any():
            raise FloatingPointError(
                f"filter {self.name!r}: f1/f2 gave non-finite outputs for {int(bad.sum())} of "
                f"{len(bad)} candidates; its networks diverged (lower LadaConfig.lr)"
            )
        return scores_from_outputs(
            exploit, exploration if explore else None, self.config.exploration_weight
        )

    # ---------------------------------------------------------------- selection
    def select(
        self,
        features: np.ndarray,
        *,
        budget: int | None = None,
        local_centroid: np.ndarray | None = None,
    ) -> np.ndarray:
        """Positions of the selected candidates, best first (see `choose`)."""
        return self.choose(features, budget=budget, local_centroid=local_centroid).indices

    def choose(
        self,
        features: np.ndarray,
        *,
        budget: int | None = None,
        local_centroid: np.ndarray | None = None,
        count: int | None = None,
    ) -> FilterChoice:
        """Apply the configured selection mode; `budget=None` means `config.budget`.

        Before any reward was observed the round-1 bootstrap decides. 'random' picks `count`
        items when given (a count-matched arm, see `LadaConfig.match_counts`), else as many as
        the budget, or, without one, as many as 'lada' would have picked. 'oracle' and
        'rho_loss' need what only the plug-in has (local items, the receiver) and are chosen
        there (`LadaPlugin.select`).
        """
        features = self._check_features(features)
        budget = self.config.budget if budget is None else budget
        n = len(features)
        mode = self.config.selection_mode
        if count is not None and mode != "random":
            raise ValueError(f"count: only 'random' takes a given count here, not {mode!r}")
        if mode in ("oracle", "rho_loss"):
            raise ValueError(f"selection_mode {mode!r}: chosen by LadaPlugin.select, not a filter")
        if mode == "all":
            return FilterChoice(np.arange(n, dtype=np.int64), None, "all")
        if mode == "random":
            if count is None:
                count = budget if budget is not None else self._lada_count(features)
            return FilterChoice(random_select(n, count, self.rng), None, "random")
        if not self.is_trained:
            return self._round1(features, local_centroid, budget)
        scores = self.score(features)
        strategy = "exploit_only" if mode == "exploit_only" else "scored"
        return FilterChoice(
            threshold_select(scores, self.config.threshold, budget), scores, strategy
        )

    def round1_select(
        self, features: np.ndarray, local_centroid: np.ndarray | None, budget: int | None
    ) -> np.ndarray:
        """Round-1 bootstrap (no rewards yet); `local_centroid` is in raw embedding space.

        With `cluster_bootstrap` off: uniform random items at the budget. Without a local
        centroid (a receiver with no local data of its own) 'nearest_clusters' has nothing to
        be near, so it falls back to 'fraction_per_cluster'.
        """
        features = self._check_features(features)
        return self._round1(features, local_centroid, budget).indices

    def _round1(
        self, features: np.ndarray, local_centroid: np.ndarray | None, budget: int | None
    ) -> FilterChoice:
        config = self.config
        n = len(features)
        count = round1_count(n, budget, config.round1_fraction)
        if not config.cluster_bootstrap:
            return FilterChoice(random_select(n, count, self.rng), None, "round1_random")
        labels = self.space.labels_of(features)
        strategy = config.round1_strategy
        if strategy == "nearest_clusters" and local_centroid is not None:
            target = self.space.standardize(np.asarray(local_centroid, dtype=np.float64)[None])[0]
            dim = self.space.embedding_dim
            indices = nearest_clusters_select(
                features[:, :dim].astype(np.float64),
                labels,
                self.space.fitted_centers(),
                target,
                count,
            )
            return FilterChoice(indices, None, "round1_nearest_clusters")
        indices = fraction_per_cluster_select(labels, config.round1_fraction, budget, self.rng)
        return FilterChoice(indices, None, "round1_fraction_per_cluster")

    def _lada_count(self, features: np.ndarray) -> int:
        if not self.is_trained:
            return round1_count(len(features), None, self.config.round1_fraction)
        scores = self.score(features, explore=True)
        return len(threshold_select(scores, self.config.threshold, None))

    # ---------------------------------------------------------------- learning
    def update(self, features: np.ndarray, rewards: np.ndarray) -> FilterFit:
        """Remember the selected items' rewards, then train f1 and f2 on everything seen so far.

        As in EE-Net, f2's example for an item is recorded when its reward arrives, with the f1
        that selected it (call `update` before anything else changes f1): f1's view of the item
        and f1's error on it, r - f1(x), the gain f1 had not captured. f1 then trains on all
        (features, reward) pairs, f2 on all recorded (view, error) pairs, both warm-started.
        """
        features = self._check_features(features)
        rewards = np.asarray(rewards, dtype=np.float64)
        if rewards.shape != (len(features),):
            raise ValueError(
                f"rewards: expected shape ({len(features)},), got {rewards.shape} for {self.name!r}"
            )
        if not np.all(np.isfinite(rewards)):
            bad = int(np.size(rewards) - np.count_nonzero(np.isfinite(rewards)))
            raise ValueError(
                f"rewards: {bad} of {len(rewards)} are not finite for {self.name!r} (set such "
                "items aside first, as LadaPlugin.observe does)"
            )
        if len(features) == 0:
            return FilterFit(float("nan"), float("nan"), self.n_observed)
        self._ensure_networks(features.shape[1])
        config = self.config
        f1, f2 = self._networks()
        assert self.f1_optimizer is not None and self.f2_optimizer is not None

        x_new = self._to_tensor(features)
        f1.eval()
        view = exploration_features(f1, x_new, config.exploration_input, config.gradient_pool_size)
        with torch.no_grad():
            error = torch.as_tensor(rewards, dtype=torch.float32, device=self.device) - f1(x_new)[0]
        self.memory_features = _append(self.memory_features, features.astype(np.float32))
        self.memory_rewards = np.concatenate([self.memory_rewards, rewards])
        self.explore_inputs = _append(self.explore_inputs, view.cpu().numpy().astype(np.float32))
        self.explore_targets = np.concatenate([self.explore_targets, error.cpu().double().numpy()])

        train = functools.partial(
            fit_regressor,
            epochs=config.epochs_per_round,
            batch_size=config.batch_size,
            loss=config.loss,
            generator=self.torch_generator,
        )
        x = self._to_tensor(self.memory_features)
        y = torch.as_tensor(self.memory_rewards, dtype=torch.float32, device=self.device)
        f1_loss = train(f1, self.f1_optimizer, x, y)
        phi = self._to_tensor(self.explore_inputs)
        residual = torch.as_tensor(self.explore_targets, dtype=torch.float32, device=self.device)
        f2_loss = train(f2, self.f2_optimizer, phi, residual)
        self.rounds_trained += 1
        return FilterFit(f1_loss, f2_loss, self.n_observed)

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: networks, optimizers, memories, clusters, RNGs.

        Holds only tensors, plain numbers, strings, lists and dicts, so `torch.load` can read it
        with `weights_only=True`.
        """
        f1, f2 = self.f1, self.f2
        return {
            "format": STATE_FORMAT,
            "name": self.name,
            "config": self.config.model_dump(mode="json"),
            "in_dim": self.in_dim,
            "rounds_trained": self.rounds_trained,
            "space": self.space.state_dict(),
            "f1": None if f1 is None else _cpu_copy(f1.state_dict()),
            "f2": None if f2 is None else _cpu_copy(f2.state_dict()),
            "f1_optimizer": _optional_optimizer_state(self.f1_optimizer),
            "f2_optimizer": _optional_optimizer_state(self.f2_optimizer),
            "memory_features": torch.from_numpy(self.memory_features.copy()),
            "memory_rewards": torch.from_numpy(self.memory_rewards.copy()),
            "explore_inputs": torch.from_numpy(self.explore_inputs.copy()),
            "explore_targets": torch.from_numpy(self.explore_targets.copy()),
            "numpy_rng": copy.deepcopy(self.rng.bit_generator.state),
            "torch_rng": self.torch_generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state written by `state_dict`; its config must equal this filter's."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"filter state: unknown format {state.get('format')!r}")
        saved = LadaConfig(**state["config"])
        if saved != self.config:
            differing = sorted(
                k for k in LadaConfig.model_fields if getattr(saved, k) != getattr(self.config, k)
            )
            raise ValueError(f"filter state: config differs in fields {differing}")
        self.name = state["name"]
        self.space.load_state_dict(state["space"])
        self.in_dim = None
        self.f1 = self.f2 = None
        self.f1_optimizer = self.f2_optimizer = None
        if state["in_dim"] is not None:
            self._ensure_networks(int(state["in_dim"]))
            f1, f2 = self._networks()
            f1.load_state_dict(state["f1"])
            f2.load_state_dict(state["f2"])
            assert self.f1_optimizer is not None and self.f2_optimizer is not None
            self.f1_optimizer.load_state_dict(copy.deepcopy(state["f1_optimizer"]))
            self.f2_optimizer.load_state_dict(copy.deepcopy(state["f2_optimizer"]))
        self.rounds_trained = int(state["rounds_trained"])
        self.memory_features = state["memory_features"].numpy().copy()
        self.memory_rewards = state["memory_rewards"].numpy().copy()
        self.explore_inputs = state["explore_inputs"].numpy().copy()
        self.explore_targets = state["explore_targets"].numpy().copy()
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = copy.deepcopy(state["numpy_rng"])
        self.torch_generator = torch.Generator()
        self.torch_generator.set_state(state["torch_rng"])

    def save(self, path: Path | str) -> None:
        """Write the state to one file (readable with `torch.load(weights_only=True)`)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), path)

    @classmethod
    def load(cls, path: Path | str, *, device: str | torch.device = "cpu") -> LearnabilityFilter:
        """A filter restored from `save`, with the config it was saved with."""
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
        restored = cls(LadaConfig(**state["config"]), name=state["name"], device=device)
        restored.load_state_dict(state)
        return restored

    # ---------------------------------------------------------------- internals
    def _ensure_networks(self, in_dim: int) -> None:
        if self.in_dim is not None:
            if in_dim != self.in_dim:
                raise ValueError(
                    f"features: width {in_dim} differs from this filter's {self.in_dim} "
                    f"({self.name!r})"
                )
            return
        config = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            f1 = RewardMLP(in_dim, config.hidden_size, config.n_hidden_layers)
            f2_in = exploration_dim(
                config.exploration_input, config.hidden_size, config.gradient_pool_size
            )
            f2 = RewardMLP(f2_in, config.hidden_size, config.n_hidden_layers)
        self.f1, self.f2 = f1.to(self.device).eval(), f2.to(self.device).eval()
        self.f1_optimizer = _adam(self.f1, config)
        self.f2_optimizer = _adam(self.f2, config)
        self.in_dim = in_dim

    def _networks(self) -> tuple[RewardMLP, RewardMLP]:
        if self.f1 is None or self.f2 is None:
            raise RuntimeError(f"filter {self.name!r}: no features seen yet (call featurize)")
        return self.f1, self.f2

    def _check_features(self, features: np.ndarray) -> np.ndarray:
        array = np.asarray(features, dtype=np.float32)
        if array.ndim != 2:
            raise ValueError(f"features: expected [N, dim], got shape {array.shape}")
        if self.in_dim is not None and len(array) and array.shape[1] != self.in_dim:
            raise ValueError(
                f"features: width {array.shape[1]} differs from this filter's {self.in_dim} "
                f"({self.name!r})"
            )
        return array

    def _to_tensor(self, features: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(features, dtype=np.float32), device=self.device)


def _append(memory: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return rows.copy() if len(memory) == 0 else np.concatenate([memory, rows])


def _adam(net: RewardMLP, config: LadaConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def _cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def _optional_optimizer_state(optimizer: torch.optim.Optimizer | None) -> dict[str, Any] | None:
    if optimizer is None:
        return None
    state = copy.deepcopy(optimizer.state_dict())
    for slot in state["state"].values():
        for key, value in slot.items():
            if isinstance(value, torch.Tensor):
                slot[key] = value.cpu()
    return state
