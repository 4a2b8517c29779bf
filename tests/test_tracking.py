"""Experiment trackers: every round's metrics reach TensorBoard and MLflow with the values of
metrics.jsonl, a resumed run logs no round twice, and nothing is written unless asked."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pytest
import tomli_w
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import _validate_metric_name
from rich.console import Console
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from typer.testing import CliRunner

from lada.cli import app
from lada.experiments.checkpoint import load_latest
from lada.experiments.config import ConfigError, validate
from lada.experiments.runner import Runner
from lada.experiments.tracking import (
    STATE_FILE,
    MlflowTracker,
    Trackers,
    open_trackers,
    round_scalars,
)
from tests.test_end_to_end import tiny_config

QUIET = Console(quiet=True)
BOTH = {"backends": ["tensorboard", "mlflow"]}

RECORD = {
    "round": 1,
    "participants": [0, 1],
    "clients": {
        "0": {
            "accuracy": 0.25,
            "n": 4,
            "per_domain": {"gcd": 0.5, "lcm": 0.0},
            "log": {
                "losses": {"lada_sft": 3.5},
                "counters": {"selected": 8.0},
                "timings": {"distillation": 1.0, "evaluation": 0.5},
                "budget": {"slm_0": {"steps": 2, "tokens": 100}},
            },
        },
        "1": {"accuracy": 0.75, "n": 4, "per_domain": {}, "log": {"timings": {"evaluation": 0.25}}},
    },
    "mean_slm_accuracy": 0.5,
    "llm": {"accuracy": 0.125, "per_domain": {"gcd": 0.25}},
    "server_log": {"losses": {}, "counters": {}, "timings": {"evaluation": 2.0}},
    "budget": {
        "server": {"steps": 0, "tokens": 0},
        "client_0": {"steps": 2, "tokens": 100},
        "client_1": {"steps": 1, "tokens": 50},
    },
    "traffic": {"bytes": {"train/down/public_paths": 300}, "messages": {}, "total_bytes": 1000},
    "wall_seconds": 7.5,
}


def test_a_round_record_becomes_named_scalars():
    selections = [
        {"round": 1, "party": "client_0", "domains": ["gcd", "gcd", "lcm"]},
        {"round": 1, "party": "server", "domains": ["gcd"]},
        {"round": 1, "party": "server", "domains": ["gcd", "?"]},
    ]
    assert round_scalars(RECORD, selections) == {
        "slm/accuracy/mean": 0.5,
        "slm/accuracy/client_0": 0.25,
        "slm/accuracy/client_1": 0.75,
        "slm/domain_accuracy/client_0/gcd": 0.5,
        "slm/domain_accuracy/client_0/lcm": 0.0,
        "llm/accuracy": 0.125,
        "llm/domain_accuracy/gcd": 0.25,
        "loss/client_0/lada_sft": 3.5,
        "counters/client_0/selected": 8.0,
        "time/client_0/distillation": 1.0,
        "time/client_0/evaluation": 0.5,
        "time/client_1/evaluation": 0.25,
        "time/server/evaluation": 2.0,
        "time/distillation": 1.0,
        "time/evaluation": 2.75,
        "time/wall": 7.5,
        "bytes/total": 1000.0,
        "bytes/train/down/public_paths": 300.0,
        "budget/server/steps": 0.0,
        "budget/server/tokens": 0.0,
        "budget/client_0/steps": 2.0,
        "budget/client_0/tokens": 100.0,
        "budget/client_1/steps": 1.0,
        "budget/client_1/tokens": 50.0,
        "selections/client_0/gcd": 2.0,
        "selections/client_0/lcm": 1.0,
        "selections/server/gcd": 2.0,
        "selections/server/_": 1.0,
    }


def test_names_mlflow_would_refuse_are_made_safe_and_non_numbers_left_out():
    record = {
        "round": 0,
        "mean_slm_accuracy": 0.0,
        "clients": {"0": {"accuracy": float("nan"), "per_domain": {"a:b?c": 1.0, "..": 1.0}}},
        "llm": {"accuracy": None, "per_domain": {"": 1.0}},
    }
    scalars = round_scalars(record)
    assert "slm/accuracy/client_0" not in scalars and "llm/accuracy" not in scalars
    for name in scalars:
        _validate_metric_name(name)  # raises on a name MLflow refuses


class _Recorder:
    def __init__(self) -> None:
        self.steps: list[int] = []

    def log(self, scalars: dict[str, float], step: int) -> None:
        self.steps.append(step)

    def close(self) -> None:
        pass


def test_rounds_already_logged_are_skipped_and_the_last_one_remembered(tmp_path):
    recorder = _Recorder()
    trackers = Trackers([recorder], tmp_path, logged_through=1)
    for round_idx in (1, 2, 2, 3):  # a resumed run re-runs round 2 after a crash
        trackers.log_round({**RECORD, "round": round_idx})
    assert recorder.steps == [2, 3]
    assert json.loads((tmp_path / STATE_FILE).read_text())["logged_through"] == 3


def test_nothing_is_written_when_no_tracker_is_asked_for(tmp_path):
    config = validate(tiny_config(tmp_path / "unused", "fedcot", True))
    assert config.tracking.backends == []
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    trackers = open_trackers(config, run_dir, [RECORD])
    trackers.log_round({**RECORD, "round": 2})
    trackers.close()
    assert list(run_dir.iterdir()) == []


def test_the_config_names_a_wrong_or_repeated_tracker():
    with pytest.raises(ConfigError, match="tracking.backends.0"):
        validate({"tracking": {"backends": ["wandb"]}})
    with pytest.raises(ConfigError, match="listed more than once"):
        validate({"tracking": {"backends": ["mlflow", "mlflow"]}})
    assert validate({"tracking": BOTH}).tracking.backends == ["tensorboard", "mlflow"]


def test_a_missing_extra_fails_before_any_work_naming_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if `lada[tracking]` were not installed
    config = validate(tiny_config(tmp_path, "fedcot", True, tracking={"backends": ["mlflow"]}))
    with pytest.raises(ConfigError, match=r"pip install 'lada\[tracking\]'"):
        Runner(config, console=QUIET)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "flags",
    [["--tracker", "tensorboard", "--tracker", "mlflow"], ["--tracker", "tensorboard,mlflow"]],
)
def test_lada_run_tracker_reports_the_missing_extra(tmp_path, monkeypatch, flags):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "mlflow", None)
    config_file = tmp_path / "tiny.toml"
    config_file.write_text(tomli_w.dumps(tiny_config(tmp_path, "fedcot", True)))
    result = CliRunner().invoke(app, ["run", str(config_file), *flags])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "tensorboard (no module 'tensorboard')" in text and "mlflow (no module" in text
    assert "pip install 'lada[tracking]'" in text
    assert not (tmp_path / "runs").exists()


def test_lada_run_refuses_an_unknown_tracker(tmp_path):
    config_file = tmp_path / "tiny.toml"
    config_file.write_text(tomli_w.dumps(tiny_config(tmp_path, "fedcot", True)))
    result = CliRunner().invoke(app, ["run", str(config_file), "--tracker", "wandb"])
    assert result.exit_code == 2 and "tracking.backends" in result.output


# ------------------------------------------------------------------------ runs end to end
def _expected(run_dir: Path) -> dict[int, dict[str, float]]:
    """Per round, the scalars that metrics.jsonl and selections.jsonl say were logged."""
    selections = [json.loads(x) for x in (run_dir / "selections.jsonl").read_text().splitlines()]
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        r = record["round"]
        out[r] = round_scalars(record, [s for s in selections if s["round"] == r])
    return out


def _tensorboard(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def _mlflow(run_dir: Path, run_id: str, names) -> dict[str, list[tuple[int, float]]]:
    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'mlflow.db'}")
    return {
        name: sorted((m.step, m.value) for m in client.get_metric_history(run_id, name))
        for name in names
    }


def _check_every_round_once(run_dir: Path, rounds: int) -> str:
    """TensorBoard and MLflow hold each round's scalars once, with metrics.jsonl's values;
    returns the MLflow run id."""
    expected = _expected(run_dir)
    assert sorted(expected) == list(range(rounds + 1))
    by_name: dict[str, list[tuple[int, float]]] = {}
    for r, scalars in expected.items():
        for name, value in scalars.items():
            by_name.setdefault(name, []).append((r, value))
    state = json.loads((run_dir / STATE_FILE).read_text())
    assert state["logged_through"] == rounds

    logged = _tensorboard(run_dir / "tensorboard")
    assert set(logged) == set(by_name)
    for name, points in by_name.items():  # TensorBoard keeps float32
        assert [s for s, _ in logged[name]] == [s for s, _ in points], name
        assert [v for _, v in logged[name]] == pytest.approx([v for _, v in points], rel=1e-6)

    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("e2e").experiment_id])
    assert run.info.run_id == state["mlflow_run_id"] and run.info.run_name == run_dir.name
    assert run.info.status == "FINISHED"
    assert run.data.params["rounds"] == str(rounds)
    assert _mlflow(run_dir, run.info.run_id, by_name) == by_name
    return run.info.run_id


@pytest.mark.slow
def test_each_round_reaches_tensorboard_and_mlflow_with_the_values_of_metrics_jsonl(tmp_path):
    config = validate(tiny_config(tmp_path, "fedcot", True, rounds=2, tracking=BOTH))
    run_dir = Runner(config, console=QUIET).run().run_dir
    _check_every_round_once(run_dir, rounds=2)

    # The names the docs promise, against the records themselves.
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    logged = _tensorboard(run_dir / "tensorboard")
    last = records[-1]
    assert logged["slm/accuracy/client_1"][-1][1] == pytest.approx(last["clients"]["1"]["accuracy"])
    assert logged["llm/accuracy"][-1][1] == pytest.approx(last["llm"]["accuracy"])
    assert logged["bytes/total"][-1][1] == last["traffic"]["total_bytes"]
    assert logged["budget/client_0/steps"][-1][1] == last["budget"]["client_0"]["steps"]
    assert logged["budget/client_0/tokens"][-1][1] == last["budget"]["client_0"]["tokens"]
    assert "time/wall" in logged and "time/client_0/distillation" in logged
    chosen = Counter(
        d
        for line in (run_dir / "selections.jsonl").read_text().splitlines()
        if (s := json.loads(line))["round"] == 2 and s["party"] == "client_0"
        for d in s["domains"]
    )
    assert chosen, "LaDa selected nothing for client 0 in round 2"
    for domain, count in chosen.items():
        assert (2, count) in logged[f"selections/client_0/{domain}"]


class _PowerCut(Exception):
    pass


@pytest.mark.slow
def test_a_resumed_run_goes_on_in_the_same_trackers_without_duplicate_steps(tmp_path, monkeypatch):
    """The run stops while logging round 2 (TensorBoard has it, MLflow not, no checkpoint);
    the resumed run re-runs round 2: TensorBoard drops the stale round-2 events, MLflow goes
    on in the same run, and every step holds one value."""
    config = validate(tiny_config(tmp_path, "fedcot", True, rounds=2, tracking=BOTH))
    log = MlflowTracker.log

    def cut_at_round_2(self, scalars, step):
        if step == 2:
            raise _PowerCut
        log(self, scalars, step)

    monkeypatch.setattr(MlflowTracker, "log", cut_at_round_2)
    runner = Runner(config, console=QUIET)
    with pytest.raises(_PowerCut):
        runner.run()
    runner.trackers.trackers[0].close()  # the TensorBoard file as a killed process leaves it
    run_dir = runner.run_dir
    first_run_id = json.loads((run_dir / STATE_FILE).read_text())["mlflow_run_id"]
    assert load_latest(run_dir).round_idx == 1
    assert 2 in [s for s, _ in _tensorboard(run_dir / "tensorboard")["llm/accuracy"]]
    monkeypatch.undo()

    Runner(config, run_dir=run_dir, resume=True, console=QUIET).run()
    assert _check_every_round_once(run_dir, rounds=2) == first_run_id
