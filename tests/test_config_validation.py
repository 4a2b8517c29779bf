"""Experiment configs: unknown fields and bad values are refused, naming the dotted field.

The same mistake must read the same whether it was written in a TOML or YAML file or given as a
`--set` override, and the message must start with the file (or "config") and the field path.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lada.experiments.config import ConfigError, load_config

# (TOML text, the same as a --set override, the dotted field the message must name, problem)
CASES = [
    ("roundz = 3", "roundz=3", "roundz", "Extra inputs are not permitted"),
    ("[lada]\nthreshld = 0.4", "lada.threshld=0.4", "lada.threshld", "Extra inputs"),
    ("[train]\nbatch_sz = 4", "train.batch_sz=4", "train.batch_sz", "Extra inputs"),
    ("[data.split]\nn_client = 2", "data.split.n_client=2", "data.split.n_client", "Extra"),
    ("[lada]\nalpha = 1.5", "lada.alpha=1.5", "lada.alpha", "less than or equal to 1"),
    ("[lada]\nthreshold = 1.0", "lada.threshold=1.0", "lada.threshold", "less than 1"),
    ("[lada]\nbudget = 0", "lada.budget=0", "lada.budget", "greater than or equal to 1"),
    ("[lada]\nbudget = 1.5", "lada.budget=1.5", "lada.budget", "fractional part"),
    ("[lada]\nlr = inf", "lada.lr=inf", "lada.lr", "finite number"),
    ("[lada]\nbeta = nan", "lada.beta=nan", "lada.beta", "finite number"),
    ("[lada]\nalpha = 'high'", "lada.alpha=high", "lada.alpha", "valid number"),
    ("[lada]\nselection_mode = 'greedy'", "lada.selection_mode=greedy", "lada.selection_mode", ""),
    (
        "[lada]\nmax_nonfinite_skips = -1",
        "lada.max_nonfinite_skips=-1",
        "lada.max_nonfinite_skips",
        "",
    ),
    (
        "[lada]\nempty_selection = 'random'",
        "lada.empty_selection=random",
        "lada.empty_selection",
        "",
    ),
    ("[lada]\nempty_selection_k = 0", "lada.empty_selection_k=0", "lada.empty_selection_k", ""),
    ("[train]\nbatch_size = 0", "train.batch_size=0", "train.batch_size", "greater than or equal"),
    ("[train]\nbatch_size = nan", "train.batch_size=nan", "train.batch_size", "finite number"),
    ("[train]\nlocal_epochs = -1", "train.local_epochs=-1", "train.local_epochs", ""),
    ("rounds = 0", "rounds=0", "rounds", "greater than or equal to 1"),
    ("rounds = 'three'", "rounds=three", "rounds", "valid integer"),
    ("seeds = [1, 'a']", "seeds=[1, 'a']", "seeds.1", "valid integer"),
    ("[data.split]\nn_clients = 0", "data.split.n_clients=0", "data.split.n_clients", ""),
    ("[llm]\nlearning_rate = 0", "llm.learning_rate=0", "llm.learning_rate", "greater than 0"),
    ("lada = 5", "lada=5", "lada", "valid dictionary"),
]


def _message(tmp_path: Path, text: str, overrides: list[str], name: str = "c.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides)
    return str(caught.value).replace(f"{path}: ", "FILE: ")


@pytest.mark.parametrize(("toml", "override", "field", "problem"), CASES)
def test_file_and_override_name_the_same_field(
    tmp_path: Path, toml: str, override: str, field: str, problem: str
) -> None:
    from_file = _message(tmp_path, toml, [])
    from_override = _message(tmp_path, "", [override])
    for message in (from_file, from_override):
        assert message.startswith(f"FILE: {field}: ")
        assert problem in message
        assert len(message.splitlines()) == 1  # one mistake, one line


def test_list_entries_are_named_by_index(tmp_path: Path) -> None:
    slms = '[[slms]]\npreset = "tiny-1m"\n'
    from_file = _message(tmp_path, slms + "learning_rate = -1\n", [])
    from_override = _message(tmp_path, slms, ["slms.0.learning_rate=-1"])
    for message in (from_file, from_override):
        assert message.startswith("FILE: slms.0.learning_rate: Input should be greater than 0")


def test_yaml_files_name_fields_the_same_way(tmp_path: Path) -> None:
    message = _message(tmp_path, "lada:\n  alpha: 2\ntrain:\n  batch_sz: 1\n", [], "c.yaml")
    assert message.splitlines() == [
        "FILE: train.batch_sz: Extra inputs are not permitted",
        "FILE: lada.alpha: Input should be less than or equal to 1",
    ]


def test_every_mistake_is_listed_on_its_own_line(tmp_path: Path) -> None:
    message = _message(tmp_path, "[lada]\nalpha = 1.5\n", ["rounds=0", "train.batch_sz=2"])
    fields = sorted(line.split(": ")[1] for line in message.splitlines())
    assert fields == ["lada.alpha", "rounds", "train.batch_sz"]


def test_without_a_file_the_origin_is_config() -> None:
    with pytest.raises(ConfigError, match=r"^config: lada\.cd_weight: "):
        load_config(None, ["lada.cd_weight=-1"])


def test_host_fields_name_the_host_and_the_field(tmp_path: Path) -> None:
    # The host is a tagged union, so the path may carry the tag: host[.fedcollm].top_k.
    for message in (
        _message(tmp_path, '[host]\nname = "fedcollm"\ntop_k = 0\n', []),
        _message(tmp_path, "", ['host.name="fedcollm"', "host.top_k=0"]),
    ):
        assert re.match(r"FILE: host(\.fedcollm)?\.top_k: Input should be greater", message)
    message = _message(tmp_path, '[host]\nname = "fedcot"\nrationale_wieght = 0.7\n', [])
    assert re.match(r"FILE: host(\.fedcot)?\.rationale_wieght: Extra inputs", message)
    assert _message(tmp_path, "", ['host.name="fedfoo"']).startswith("FILE: host: ")


def test_a_host_table_without_a_name_configures_the_default_host(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[host]\nrationale_weight = 0.7\n")
    from_file = load_config(path)
    path.write_text("")
    from_override = load_config(path, ["host.rationale_weight=0.7"])
    for config in (from_file, from_override):
        assert config.host.name == load_config(None).host.name
        assert config.host.rationale_weight == 0.7
    assert re.match(
        r"FILE: host(\.fedcot)?\.top_k: Extra inputs", _message(tmp_path, "", ["host.top_k=3"])
    )


def test_an_override_into_a_value_that_is_not_a_table_is_refused(tmp_path: Path) -> None:
    message = _message(tmp_path, "[lada]\nalpha = 0.5\n", ["lada.alpha.low=1"])
    assert message == "--set lada.alpha.low: lada.alpha is not a table"
    assert _message(tmp_path, "", ["lada.alpha"]).endswith("expected KEY=VALUE")


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("slms.3.preset=tiny-1m", "slms.3: no list entry '3'"),
        ("slms.x.preset=tiny-1m", "slms.x: no list entry 'x'"),
        ("rounds.x=1", "rounds is not a table"),
    ],
)
def test_bad_override_paths_name_the_field(tmp_path, assignment, message):
    path = tmp_path / "c.toml"
    path.write_text('rounds = 3\n[[slms]]\npreset = "tiny-1m"\n')
    with pytest.raises(ConfigError, match=message):
        load_config(path, [assignment])


def test_a_yaml_file_that_is_not_a_table_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("just a string\n")
    with pytest.raises(ConfigError, match="top level must be a table"):
        load_config(path, ["rounds=2"])


def test_infinite_numbers_are_refused_in_the_experiment_config(tmp_path):
    with pytest.raises(ConfigError, match="federation.round_timeout_s"):
        load_config(None, ["federation.round_timeout_s=inf"])
