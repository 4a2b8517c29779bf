"""Partial participation: a seeded sample of clients takes part in each round after setup."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from rich.console import Console

from lada.experiments.config import ConfigError, validate
from lada.experiments.runner import Runner
from lada.federation.sampling import participants
from tests.test_end_to_end import tiny_config

QUIET = Console(quiet=True)


def test_setup_and_unset_size_reach_every_client() -> None:
    ids = [3, 0, 2, 1]
    assert participants(ids, 2, seed=0, round_idx=0) == [0, 1, 2, 3]
    assert participants(ids, None, seed=0, round_idx=5) == [0, 1, 2, 3]
    assert participants(ids, 4, seed=0, round_idx=5) == [0, 1, 2, 3]


def test_sample_is_a_sorted_subset_of_the_asked_size_and_repeats_per_seed_and_round() -> None:
    ids = list(range(64))
    first = participants(ids, 8, seed=7, round_idx=3)
    assert len(first) == 8 and len(set(first)) == 8
    assert first == sorted(first) and set(first) <= set(ids)
    np.random.seed(123)  # the global generator plays no part
    assert participants(ids, 8, seed=7, round_idx=3) == first
    assert participants(ids, 8, seed=8, round_idx=3) != first
    assert participants(ids, 8, seed=7, round_idx=4) != first


def test_every_client_is_drawn_about_equally_often() -> None:
    ids = list(range(16))
    counts = Counter(c for r in range(1, 801) for c in participants(ids, 4, 0, r))
    assert set(counts) == set(ids)
    # 800 rounds x 4 / 16 = 200 draws each; binomial sd about 12, so 60 is five sd.
    assert all(abs(n - 200) < 60 for n in counts.values()), counts


@pytest.mark.parametrize(
    ("federation", "field"),
    [
        ({"clients_per_round": 3}, "federation.clients_per_round"),
        ({"clients_per_round": 1, "min_clients": 2}, "federation.min_clients"),
        ({"clients_per_round": 0}, "federation.clients_per_round"),
    ],
)
def test_impossible_participation_is_refused_naming_the_field(tmp_path, federation, field) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        validate(tiny_config(tmp_path, "fedcot", False, federation=federation))


@pytest.mark.slow
@pytest.mark.parametrize("scored", ["all", "participants"])
def test_only_the_sampled_clients_take_part_and_the_sample_is_recorded(tmp_path, scored) -> None:
    data = tiny_config(
        tmp_path,
        "fedcot",
        False,
        rounds=3,
        data={
            "suite": "default",
            "split": {"n_public": 16, "n_clients": 3, "n_train": 12, "n_test": 4},
        },
        federation={"clients_per_round": 1},
        evaluation={"clients": scored},
    )
    config = validate(data)
    run_dir = Runner(config, console=QUIET).run().run_dir
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]

    assert records[0]["participants"] == [0, 1, 2]
    for record in records[1:]:
        expected = participants(range(3), 1, config.seed, record["round"])
        assert record["participants"] == expected
        # The round's training messages went to the sampled client only.
        messages = record["traffic"]["messages"]
        assert sum(n for k, n in messages.items() if k.startswith("train/down/")) == 1, messages
        assert sum(n for k, n in messages.items() if k.startswith("train/up/")) == 1, messages
        scored_ids = sorted(int(c) for c in record["clients"])
        assert scored_ids == (expected if scored == "participants" else [0, 1, 2])
    if scored == "all":
        # A client that sat a round out kept its SLM: it scores what it scored the round before.
        for before, record in zip(records, records[1:]):
            for cid in {"0", "1", "2"} - {str(c) for c in record["participants"]}:
                assert record["clients"][cid]["accuracy"] == before["clients"][cid]["accuracy"]


def test_the_simulation_runs_as_many_actors_as_asked_or_as_the_cores_hold(tmp_path, monkeypatch):
    from lada.apps.simulation import federation_config

    def config(n_clients: int, **federation) -> object:
        data = tiny_config(tmp_path, "fedcot", False, federation=federation)
        data["data"]["split"]["n_clients"] = n_clients
        return validate(data)

    settings = federation_config(config(64, simulation_actors=2))
    assert "num-supernodes=64" in settings and "init-args-num-cpus=2 " in settings + " "
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert "init-args-num-cpus=8 " in federation_config(config(64)) + " "
    two_cores = federation_config(config(64, cpus_per_client=2.0))
    assert "client-resources-num-cpus=2" in two_cores and "init-args-num-cpus=8 " in two_cores + " "
    assert "init-args-num-cpus=3 " in federation_config(config(3)) + " "  # never above the clients
