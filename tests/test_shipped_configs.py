"""Every config shipped in configs/ validates, so a user can run it unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from lada.experiments.config import load_config
from lada.models.presets import HUB_PRESETS, TINY_PRESETS
from lada.models.shipped import SHIPPED
from lada.tasks.gym_suite import SUITES

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.toml"))


def test_configs_are_shipped() -> None:
    names = {p.stem for p in CONFIGS}
    assert {"quickstart", "paper-scale", "fedcot", "fedcollm", "fedmkt", "crosslm"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_is_valid_and_names_known_models(path: Path) -> None:
    config = load_config(path)
    known = set(TINY_PRESETS) | set(HUB_PRESETS) | set(SHIPPED) | {"smollm2-135m"}
    assert config.llm.preset in known
    assert all(spec.preset in known for spec in config.slms)
    if config.data.suite is not None:
        suite_domains = {spec.name for spec in SUITES[config.data.suite].domains}
        for domains in config.data.split.client_domains or []:
            assert set(domains) <= suite_domains, f"{path.name}: unknown client domain"
        held_out = set(config.llm.pretrain.held_out_domains) if config.llm.pretrain else set()
        assert held_out <= suite_domains


def test_paper_scale_matches_the_paper() -> None:
    config = load_config(Path(__file__).parents[1] / "configs" / "paper-scale.toml")
    split = config.data.split
    assert (split.n_public, split.n_clients, split.n_train, split.n_test) == (1000, 3, 1000, 500)
    assert config.rounds == 5 and len(config.seeds) == 3


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_tiny_models_train_at_or_below_their_presets_rate(path: Path) -> None:
    """Above a tiny preset's own rate, training from scratch falls off a cliff (tiny-1m learns
    nothing at 3e-3; docs/results.md), so no shipped config may train one faster."""
    config = load_config(path)
    for spec in config.slms:
        arch = SHIPPED[spec.preset].pretrain.preset if spec.preset in SHIPPED else spec.preset
        if arch in TINY_PRESETS:
            assert spec.learning_rate <= TINY_PRESETS[arch].learning_rate, spec.preset
    if config.llm.pretrain is not None and config.llm.preset in TINY_PRESETS:
        assert config.llm.pretrain.learning_rate <= TINY_PRESETS[config.llm.preset].learning_rate


def test_the_tiny_host_configs_share_one_pretrained_teacher() -> None:
    """One pretraining setting for every host config: the teacher is pretrained (81 minutes on one
    CPU thread) once and every host reuses the cached weights."""
    keys = {
        path.stem: load_config(path).llm.pretrain.model_copy(update={"preset": "tiny-10m"}).key()
        for path in CONFIGS
        if path.stem in {"fedcot", "fedcollm", "fedmkt", "crosslm"}
    }
    assert len(keys) == 4 and len(set(keys.values())) == 1, keys


@pytest.mark.parametrize("name", ["quickstart", "proof"])
def test_quickstart_and_proof_need_no_pretraining(name: str) -> None:
    """A fresh machine runs them at once: teacher and students are shipped weights."""
    config = load_config(Path(__file__).parents[1] / "configs" / f"{name}.toml")
    assert config.llm.preset in SHIPPED
    assert all(spec.preset in SHIPPED for spec in config.slms)
