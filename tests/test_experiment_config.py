"""The experiment config: file loading, CLI overrides, validation messages, round-trips."""

from __future__ import annotations

import json
import tomllib

import pytest

from lada.experiments.config import (
    ConfigError,
    ExperimentConfig,
    apply_override,
    dump_config,
    load_config,
    validate,
)


def _write(tmp_path, text: str, name: str = "c.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_are_valid_and_toml_round_trips() -> None:
    config = ExperimentConfig()
    again = validate(tomllib.loads(dump_config(config)))
    assert again == config


def test_overrides_reach_nested_fields_with_typed_values(tmp_path) -> None:
    path = _write(tmp_path, 'rounds = 2\n[host]\nname = "fedcot"\n')
    config = load_config(
        path,
        [
            "lada.alpha=0.3",
            "lada.budget=40",
            "lada_enabled=false",
            "data.split.client_domains=[['gcd'], ['lcm']]",
            "data.split.n_clients=2",
            'llm.preset="tiny-2m"',
            "host.rationale_weight=0.7",
        ],
    )
    assert config.lada.alpha == 0.3
    assert config.lada.budget == 40
    assert config.lada_enabled is False
    assert config.data.split.client_domains == [["gcd"], ["lcm"]]
    assert config.llm.preset == "tiny-2m"
    assert config.host.rationale_weight == 0.7
    assert config.rounds == 2


def test_list_overrides_index_by_number() -> None:
    data = {"slms": [{"preset": "tiny-1m"}, {"preset": "tiny-1m"}]}
    apply_override(data, "slms.1.preset=tiny-gpt2-2m")
    assert data["slms"][1]["preset"] == "tiny-gpt2-2m"


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("lada.alpha=1.5", "lada.alpha"),
        ("rounds=0", "rounds"),
        ("lada.threshld=0.4", "lada.threshld"),
        ('host.name="fedfoo"', "host"),
        ("data.split.n_clients=0", "data.split.n_clients"),
        ("train.batch_size=-1", "train.batch_size"),
    ],
)
def test_invalid_fields_are_named(tmp_path, override: str, field: str) -> None:
    path = _write(tmp_path, "")
    with pytest.raises(ConfigError) as err:
        load_config(path, [override])
    assert f"{path}: {field}" in str(err.value)


def test_slm_count_must_match_clients() -> None:
    with pytest.raises(ConfigError, match="slms: give 1 spec or 3"):
        validate({"slms": [{"preset": "tiny-1m"}, {"preset": "tiny-1m"}]})


def test_bad_files_name_the_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="c.toml: not valid TOML"):
        load_config(_write(tmp_path, "rounds = = 2"))
    with pytest.raises(ConfigError, match="missing.toml: cannot read"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(_write(tmp_path, ""), ["rounds"])


def test_yaml_configs_load(tmp_path) -> None:
    path = _write(tmp_path, "rounds: 4\nlada:\n  cd_weight: 0.5\n", name="c.yaml")
    config = load_config(path)
    assert config.rounds == 4 and config.lada.cd_weight == 0.5


def test_json_dump_is_exact_including_nulls() -> None:
    config = validate({"llm": {"preset": "tiny-2m", "pretrain": None}})
    again = ExperimentConfig.model_validate(json.loads(config.model_dump_json()))
    assert again.llm.pretrain is None and again == config
