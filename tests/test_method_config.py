"""LadaConfig: defaults from the paper, documented fields, validated ranges, no stray keys."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lada.method.config import LadaConfig


def test_defaults_follow_the_paper_and_the_authors_code() -> None:
    config = LadaConfig()
    assert config.threshold == 0.5
    assert config.alpha == 0.5
    assert config.beta == 1.0
    assert config.epochs_per_round == 10
    assert (config.lr, config.weight_decay, config.batch_size) == (1e-5, 1e-4, 32)
    assert (config.loss, config.hidden_size) == ("l1", 512)
    assert config.correctness_gate is True
    assert config.selection_mode == "lada"


def test_every_field_is_documented() -> None:
    undocumented = [name for name, info in LadaConfig.model_fields.items() if not info.description]
    assert undocumented == []


def test_unknown_keys_are_rejected() -> None:
    with pytest.raises(ValidationError, match="thresold"):
        LadaConfig(thresold=0.4)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("threshold", 1.0),
        ("threshold", -0.1),
        ("budget", 0),
        ("alpha", 1.5),
        ("lr", 0.0),
        ("beta", 0.0),
        ("cd_weight", -1.0),
        ("round1_fraction", 0.0),
        ("n_clusters", 0),
        ("selection_mode", "greedy"),
        ("item_reward", "accuracy"),
        ("exploration_input", "weights"),
    ],
)
def test_out_of_range_values_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        LadaConfig(**{field: value})


def test_lr_can_be_overridden() -> None:
    assert LadaConfig(lr=1e-3).lr == 1e-3
