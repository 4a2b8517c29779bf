"""The Flower simulation runtime gives the same run as the in-process runtime."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from lada.apps.run import run_experiment
from lada.experiments.config import validate
from lada.experiments.runner import Runner
from tests.test_end_to_end import tiny_config
from tests.test_resume import _comparable, _selections

QUIET = Console(quiet=True)


@pytest.mark.slow
def test_flower_simulation_matches_the_inprocess_runtime_round_by_round(tmp_path):
    data = tiny_config(tmp_path, "fedcot", True, rounds=2)
    inprocess = Runner(validate(data), console=QUIET, audit=True).run()
    flower = run_experiment(
        validate({**data, "runtime": "flower-sim"}),
        run_dir=tmp_path / "flower-run",
        console=QUIET,
        audit=True,
    )

    def records(run_dir):
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        return [_comparable(json.loads(x)) for x in lines]

    expected, got = records(inprocess.run_dir), records(flower.run_dir)
    assert [r["round"] for r in got] == [0, 1, 2]
    assert got == expected  # accuracies, losses, counters, selections and bytes per message kind
    assert _selections(flower.run_dir) == _selections(inprocess.run_dir)
    assert {p.name for p in flower.run_dir.iterdir()} >= {
        "config.toml",
        "config.json",
        "metrics.jsonl",
        "selections.jsonl",
        "summary.json",
    }
    assert flower.summary["final"] == inprocess.summary["final"]
    # The privacy audit saw the same strings cross on both runtimes.
    assert flower.audit.records and sorted(flower.audit.records) == sorted(inprocess.audit.records)
