"""LearnabilityFilter: round-1 clusters, scoring, modes, exact save/load, bandit behaviour."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from lada.method.config import LadaConfig
from lada.method.filter import LearnabilityFilter
from lada.method.networks import RewardMLP, pooled_gradient
from lada.method.selection import threshold_select

DIM = 8


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    # Tiny networks: thread hand-offs cost more than they save on a shared 2-core machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _config(**overrides: object) -> LadaConfig:
    base: dict[str, object] = {"hidden_size": 32, "lr": 1e-3, "n_clusters": 3, "seed": 0}
    return LadaConfig(**(base | overrides))


def _blobs(rng: np.random.Generator, per_blob: int) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated Gaussian blobs; returns points and their blob index."""
    centers = np.eye(DIM)[:3] * 10.0
    labels = np.repeat(np.arange(3), per_blob)
    return centers[labels] + rng.normal(scale=0.3, size=(len(labels), DIM)), labels


def _trained_filter(config: LadaConfig, rounds: int = 2) -> tuple[LearnabilityFilter, np.ndarray]:
    rng = np.random.default_rng(1)
    filt = LearnabilityFilter(config)
    points, labels = _blobs(rng, 20)
    features = filt.featurize(points)
    for _ in range(rounds):
        chosen = rng.choice(len(points), 15, replace=False)
        filt.update(features[chosen], labels[chosen] / 2 + rng.normal(scale=0.01, size=15))
    return filt, features


# ------------------------------------------------------------------ features and round 1


def test_features_are_standardised_embedding_plus_cluster_centroid() -> None:
    filt = LearnabilityFilter(_config())
    points, labels = _blobs(np.random.default_rng(0), 10)
    features = filt.featurize(points * 100.0 + 5.0)  # scale and shift do not matter
    assert features.shape == (30, 2 * DIM)
    z = features[:, :DIM]
    assert np.allclose(z.mean(0), 0.0, atol=1e-5) and np.allclose(z.std(0), 1.0, atol=1e-4)
    for blob in range(3):  # one centroid per blob, equal to the mean of its members
        halves = features[labels == blob, DIM:]
        assert np.allclose(halves, halves[0])
        assert np.allclose(halves[0], z[labels == blob].mean(0), atol=1e-4)


def test_round1_picks_the_cluster_nearest_the_local_centroid() -> None:
    rng = np.random.default_rng(0)
    filt = LearnabilityFilter(_config())
    points, labels = _blobs(rng, 12)
    features = filt.featurize(points)
    local = np.eye(DIM)[1] * 10.0 + rng.normal(scale=0.3, size=DIM)  # near blob 1
    chosen = filt.round1_select(features, local, budget=12)
    assert sorted(labels[chosen].tolist()) == [1] * 12
    # a larger budget takes all of blob 1 first, then part of the next cluster
    chosen = filt.round1_select(features, local, budget=18)
    assert labels[chosen[:12]].tolist() == [1] * 12
    assert len(set(labels[chosen[12:]].tolist())) == 1 and labels[chosen[12]] != 1
    # the plain `select` of an untrained filter is the same bootstrap
    first = filt.select(features, budget=12, local_centroid=local)
    assert set(labels[first].tolist()) == {1}


def test_round1_fraction_per_cluster_and_random_bootstrap() -> None:
    rng = np.random.default_rng(0)
    points, labels = _blobs(rng, 10)
    filt = LearnabilityFilter(_config(round1_strategy="fraction_per_cluster", round1_fraction=0.3))
    chosen = filt.round1_select(filt.featurize(points), np.zeros(DIM), budget=None)
    assert np.bincount(labels[chosen], minlength=3).tolist() == [3, 3, 3]
    plain = LearnabilityFilter(_config(cluster_bootstrap=False))
    choice = plain.choose(plain.featurize(points), budget=7, local_centroid=np.zeros(DIM))
    assert choice.strategy == "round1_random"
    assert len(choice.indices) == len(set(choice.indices.tolist())) == 7


def test_no_local_centroid_falls_back_to_fraction_per_cluster() -> None:
    points, labels = _blobs(np.random.default_rng(0), 10)
    filt = LearnabilityFilter(_config(round1_fraction=0.5))
    choice = filt.choose(filt.featurize(points), local_centroid=None)
    assert choice.strategy == "round1_fraction_per_cluster"
    assert np.bincount(labels[choice.indices], minlength=3).tolist() == [5, 5, 5]
    capped = filt.choose(filt.featurize(points), local_centroid=None, budget=6)
    assert np.bincount(labels[capped.indices], minlength=3).tolist() == [2, 2, 2]


# ------------------------------------------------------------------ scoring and modes


def test_scores_are_minmax_of_the_network_outputs() -> None:
    filt, features = _trained_filter(_config(exploration_weight=0.7))
    exploit, explore = filt.network_outputs(features)
    raw = exploit + 0.7 * explore
    expected = (raw - raw.min()) / (raw.max() - raw.min())
    assert np.allclose(filt.score(features), expected)
    only_f1 = (exploit - exploit.min()) / (exploit.max() - exploit.min())
    assert np.allclose(filt.score(features, explore=False), only_f1)


def test_trained_selection_applies_threshold_then_budget() -> None:
    filt, features = _trained_filter(_config(threshold=0.3))
    scores = filt.score(features)
    chosen = filt.select(features)
    assert chosen.tolist() == threshold_select(scores, 0.3, None).tolist()
    assert np.all(scores[chosen] > 0.3)
    assert np.all(scores[np.setdiff1d(np.arange(len(features)), chosen)] <= 0.3)
    capped = filt.select(features, budget=4)
    assert capped.tolist() == chosen[:4].tolist()
    assert np.all(scores[capped] >= np.sort(scores)[-4])


def test_config_budget_is_the_default_cap() -> None:
    filt, features = _trained_filter(_config(threshold=0.0, budget=5))
    assert len(filt.select(features)) == 5
    assert len(filt.select(features, budget=9)) == 9


def test_selection_modes() -> None:
    _, features = _trained_filter(_config())
    everything, _ = _trained_filter(_config(selection_mode="all", budget=3))
    assert everything.select(features).tolist() == list(range(len(features)))
    random_filter, _ = _trained_filter(_config(selection_mode="random"))
    lada_count = len(threshold_select(random_filter.score(features, explore=True), 0.5, None))
    assert len(random_filter.select(features)) == lada_count
    assert len(set(random_filter.select(features, budget=6).tolist())) == 6
    exploit, _ = _trained_filter(_config(selection_mode="exploit_only", threshold=0.0))
    f1_only = exploit.network_outputs(features)[0]
    assert exploit.select(features).tolist() == np.argsort(-f1_only, kind="stable")[:-1].tolist()


def test_modes_name_their_strategy_and_refuse_what_they_cannot_do() -> None:
    trained, features = _trained_filter(_config())
    assert trained.choose(features).strategy == "scored"
    exploit, _ = _trained_filter(_config(selection_mode="exploit_only"))
    assert exploit.choose(features).strategy == "exploit_only"
    random_filter, _ = _trained_filter(_config(selection_mode="random"))
    assert random_filter.choose(features, count=4).strategy == "random"
    lada, _ = _trained_filter(_config())
    with pytest.raises(ValueError, match="^count: only 'random' takes a given count here"):
        lada.choose(features, count=4)
    for mode in ("oracle", "rho_loss"):
        plugin_only = LearnabilityFilter(_config(selection_mode=mode, budget=5))
        with pytest.raises(ValueError, match=f"^selection_mode '{mode}': chosen by LadaPlugin"):
            plugin_only.choose(plugin_only.featurize(features[:, :DIM]))


def test_a_diverged_network_is_reported_not_scored() -> None:
    filt, features = _trained_filter(_config())
    assert filt.f2 is not None
    with torch.no_grad():
        filt.f2.head.bias.fill_(float("nan"))  # f1 still finite: f2 alone diverged
    with pytest.raises(FloatingPointError, match="non-finite outputs for 60 of 60 candidates"):
        filt.score(features)


def test_an_update_without_items_changes_nothing_and_one_item_trains() -> None:
    filt, features = _trained_filter(_config())
    observed, rounds = filt.n_observed, filt.rounds_trained
    fit = filt.update(features[:0], np.zeros(0))
    assert np.isnan(fit.f1_loss) and np.isnan(fit.f2_loss) and fit.n_memory == observed
    assert (filt.n_observed, filt.rounds_trained) == (observed, rounds)
    fit = filt.update(features[:1], np.array([0.5]))
    assert np.isfinite(fit.f1_loss) and np.isfinite(fit.f2_loss)
    assert fit.n_memory == observed + 1
    assert filt.rounds_trained == rounds + 1


def test_f2_learns_what_f1_missed_on_each_observed_item() -> None:
    filt = LearnabilityFilter(_config(lr=0.05, weight_decay=0.01), name="llm->slm_0")
    assert (filt.name, LearnabilityFilter(_config()).name) == ("llm->slm_0", "")
    features = filt.featurize(_blobs(np.random.default_rng(0), 10)[0])
    for optimizer in (filt.f1_optimizer, filt.f2_optimizer):
        assert optimizer is not None
        assert optimizer.param_groups[0]["lr"] == 0.05
        assert optimizer.param_groups[0]["weight_decay"] == 0.01
    rewards = np.linspace(0.0, 1.0, 6)
    missed = rewards - filt.network_outputs(features[:6])[0]  # with the f1 that selected them
    filt.update(features[:6], rewards)
    assert filt.explore_targets == pytest.approx(missed, abs=1e-6)
    assert len(filt.explore_inputs) == len(filt.memory_rewards) == 6


def test_non_finite_rewards_are_refused_with_their_count() -> None:
    filt, features = _trained_filter(_config())
    filt.name = "f"
    with pytest.raises(ValueError, match="^rewards: 2 of 3 are not finite for 'f'"):
        filt.update(features[:3], np.array([0.5, np.nan, np.inf]))
    assert filt.n_observed == 30  # nothing remembered


def test_random_mode_takes_as_many_as_lada_would() -> None:
    """Without a count or a budget, 'random' takes what 'lada' would have taken: the round-1
    share before any reward, then as many as score above the threshold with f1 + w*f2."""
    fresh = LearnabilityFilter(_config(selection_mode="random", round1_fraction=0.25))
    points, _ = _blobs(np.random.default_rng(0), 10)
    assert len(fresh.select(fresh.featurize(points))) == 8  # ceil(0.25 * 30)
    filt, features = _trained_filter(_config(selection_mode="random", exploration_weight=10.0))
    with_f2 = len(threshold_select(filt.score(features, explore=True), 0.5, None))
    f1_only = len(threshold_select(filt.score(features, explore=False), 0.5, None))
    assert with_f2 != f1_only  # the scenario tells the two counts apart
    assert len(filt.select(features)) == with_f2


def test_pooled_gradient_matches_autograd() -> None:
    torch.manual_seed(0)
    net = RewardMLP(6, 10, 2)
    x = torch.randn(3, 6)
    pooled = pooled_gradient(net, x, pool_size=16)
    assert pooled.shape == (3, 16)
    for row in range(3):
        net.zero_grad()
        net(x[row : row + 1])[0].sum().backward()
        flat = torch.cat(
            [dict(net.named_parameters())[n].grad.flatten() for n in net.last_layer_names()]
        )
        expected = torch.nn.functional.adaptive_avg_pool1d(flat[None, None], 16)[0, 0]
        expected = expected / expected.pow(2).mean().sqrt()
        assert torch.allclose(pooled[row], expected, atol=1e-5)


def test_gradient_exploration_input_trains_and_scores() -> None:
    filt, features = _trained_filter(_config(exploration_input="gradient", gradient_pool_size=24))
    assert filt.explore_inputs.shape[1] == 24
    scores = filt.score(features)
    assert scores.min() == 0.0 and scores.max() == 1.0


def test_bad_shapes_are_rejected() -> None:
    filt, features = _trained_filter(_config())
    with pytest.raises(ValueError, match="width"):
        filt.score(features[:, :5])
    with pytest.raises(ValueError, match="rewards"):
        filt.update(features[:3], np.zeros(2))
    with pytest.raises(ValueError, match=r"^features: expected \[N, dim\], got shape \(16,\)"):
        filt.score(features[0])
    with pytest.raises(RuntimeError, match="no features seen yet"):
        LearnabilityFilter(_config()).score(features)


# ------------------------------------------------------------------ state


@pytest.mark.parametrize("exploration_input", ["hidden", "gradient"])
def test_save_load_round_trips_exactly(tmp_path: Path, exploration_input: str) -> None:
    config = _config(exploration_input=exploration_input, gradient_pool_size=16)
    filt, features = _trained_filter(config)
    path = tmp_path / "filter.pt"
    filt.save(path)
    restored = LearnabilityFilter.load(path)
    assert np.array_equal(restored.score(features), filt.score(features))
    assert restored.rounds_trained == filt.rounds_trained == 2
    # continuing both gives identical networks, optimizers, memories and random draws
    rewards = np.linspace(0, 1, 10)
    filt.update(features[:10], rewards)
    restored.update(features[:10], rewards)
    assert np.array_equal(restored.score(features), filt.score(features))
    random_twin = LearnabilityFilter(config.model_copy(update={"selection_mode": "random"}))
    assert random_twin.config != config
    assert filt.rng.integers(1 << 30) == restored.rng.integers(1 << 30)


def test_state_dict_is_a_snapshot_and_checks_the_config() -> None:
    filt, features = _trained_filter(_config())
    state = filt.state_dict()
    before = filt.score(features)
    filt.update(features[:5], np.ones(5))
    other = LearnabilityFilter(_config())
    other.load_state_dict(state)
    assert np.array_equal(other.score(features), before)
    with pytest.raises(ValueError, match="threshold"):
        LearnabilityFilter(_config(threshold=0.2)).load_state_dict(state)


def test_state_dict_is_a_snapshot_of_the_optimizers_too() -> None:
    filt, features = _trained_filter(_config())
    state = filt.state_dict()
    early = LearnabilityFilter(_config())
    early.load_state_dict(state)
    filt.update(features[:5], np.ones(5))  # must leave the Adam moments in `state` as they were
    late = LearnabilityFilter(_config())
    late.load_state_dict(state)
    rewards = np.linspace(0, 1, 10)
    early.update(features[:10], rewards)
    late.update(features[:10], rewards)
    assert np.array_equal(early.score(features), late.score(features))


def test_one_state_restores_several_filters_that_share_nothing() -> None:
    filt, features = _trained_filter(_config())
    state = filt.state_dict()
    rewards = np.linspace(0, 1, 10)
    first, second = LearnabilityFilter(_config()), LearnabilityFilter(_config())
    first.load_state_dict(state)
    first.update(features[:10], rewards)  # must not move the optimizer state held in `state`
    second.load_state_dict(state)
    second.update(features[:10], rewards)
    assert np.array_equal(first.score(features), second.score(features))


def test_save_makes_its_folder_and_load_keeps_name_and_device(tmp_path: Path) -> None:
    filt, features = _trained_filter(_config())
    filt.name = "llm->slm_0"
    path = tmp_path / "nested" / "deeper" / "filter.pt"
    filt.save(path)
    restored = LearnabilityFilter.load(path, device="cpu:0")
    assert restored.name == "llm->slm_0"
    assert restored.device == torch.device("cpu:0") != torch.device("cpu")
    assert np.array_equal(restored.score(features), filt.score(features))


def test_unknown_formats_and_unsafe_files_are_refused(tmp_path: Path) -> None:
    state = LearnabilityFilter(_config()).state_dict()
    with pytest.raises(ValueError, match="^filter state: unknown format 99$"):
        LearnabilityFilter(_config()).load_state_dict({**state, "format": 99})
    path = tmp_path / "unsafe.pt"
    torch.save({**state, "extra": Fraction(1, 3)}, path)  # an object, not plain data
    with pytest.raises(pickle.UnpicklingError):
        LearnabilityFilter.load(path)


def test_fresh_filter_state_round_trips(tmp_path: Path) -> None:
    LearnabilityFilter(_config()).save(tmp_path / "empty.pt")
    restored = LearnabilityFilter.load(tmp_path / "empty.pt")
    assert restored.f1 is None and not restored.is_trained
    restored.save(tmp_path / "again.pt")  # a restored filter saves again
    assert LearnabilityFilter.load(tmp_path / "again.pt").f1_optimizer is None


# ------------------------------------------------------------------ behaviour as a bandit


def _bandit_run(mode: str, seed: int, rounds: int = 5) -> list[float]:
    """Fresh candidates per round; true reward = sigmoid(2 <d, x>) + noise; returns per-round
    mean true reward of the selected items."""
    rng = np.random.default_rng(100 + seed)
    direction = np.zeros(DIM)
    direction[:2] = [1.0, -0.5]
    config = _config(hidden_size=64, n_clusters=4, budget=20, selection_mode=mode, seed=seed)
    filt = LearnabilityFilter(config)
    means = []
    for _ in range(rounds):
        points = rng.normal(size=(200, DIM))
        true = 1 / (1 + np.exp(-2 * points @ direction))
        features = filt.featurize(points)
        chosen = filt.select(features, local_centroid=np.zeros(DIM))
        assert 0 < len(chosen) <= 20
        filt.update(features[chosen], true[chosen] + rng.normal(scale=0.05, size=len(chosen)))
        means.append(float(true[chosen].mean()))
    return means


def test_filter_beats_random_at_the_same_budget() -> None:
    for seed in (0, 1):
        lada = _bandit_run("lada", seed)
        random = _bandit_run("random", seed)
        # after two rounds of feedback the filter picks clearly better items than chance
        assert np.mean(lada[-2:]) > np.mean(random[-2:]) + 0.2, (lada, random)
        assert np.mean(lada[-2:]) > 0.7


def _region_run(mode: str, seed: int, rounds: int = 6) -> np.ndarray:
    """Four regions with rewards 0.5, 0.3, 0.9, 0.2; the receiver's own data sits in region 0,
    so round 1 starts there. Returns the per-round count of picks in each region."""
    rng = np.random.default_rng(seed)
    centers = np.eye(DIM)[:4] * 4.0
    value = np.array([0.5, 0.3, 0.9, 0.2])
    config = _config(
        hidden_size=64,
        n_clusters=4,
        budget=30,
        selection_mode=mode,
        seed=seed,
        exploration_weight=2.0,
    )
    filt = LearnabilityFilter(config)
    picks = []
    for _ in range(rounds):
        region = rng.integers(0, 4, size=120)
        features = filt.featurize(centers[region] + rng.normal(scale=0.7, size=(120, DIM)))
        chosen = filt.select(features, local_centroid=centers[0])
        noise = rng.normal(scale=0.05, size=len(chosen))
        filt.update(features[chosen], value[region[chosen]] + noise)
        picks.append(np.bincount(region[chosen], minlength=4))
    return np.array(picks)


def test_exploration_reaches_a_region_exploitation_never_tries() -> None:
    """Where f1 alone locks into the familiar region 0 and never tries the better region 2,
    f1 + w*f2 tries it, and then prefers it."""
    locked = 0
    for seed in (2, 4):
        exploit = _region_run("exploit_only", seed)
        if exploit[1:, 2].sum() > 0:
            continue
        locked += 1
        explore = _region_run("lada", seed)
        assert explore[1:, 2].sum() > 0, (seed, explore)
        assert explore[-1, 2] > explore[-1, 0], (seed, explore)
    assert locked >= 1  # the scenario does trap exploitation alone
