"""Interrupted runs continue exactly: SIGKILL and resume, torn checkpoints, changed configs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomli_w
import torch
from rich.console import Console

from lada.experiments.checkpoint import (
    CheckpointError,
    list_checkpoints,
    load_latest,
    save_checkpoint,
)
from lada.experiments.config import ConfigError, validate
from lada.experiments.runner import Runner, check_same_config
from tests.test_end_to_end import tiny_config

QUIET = Console(quiet=True)


def _comparable(record: dict) -> dict:
    """A metrics record without what legitimately differs between runs: times. Bytes stay: the
    evaluation reports carry times at a fixed width, so their size does not vary."""
    out = json.loads(json.dumps(record))
    out.pop("wall_seconds", None)
    out["server_log"].pop("timings", None)
    for client in out["clients"].values():
        client["log"].pop("timings", None)
    return out


def _metrics(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [_comparable(json.loads(x)) for x in lines]


def _selections(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "selections.jsonl").read_text().splitlines()]


def _config(tmp_path: Path, rounds: int, host: str = "fedcot") -> dict:
    return tiny_config(tmp_path, host, True, rounds=rounds)


@pytest.mark.slow
def test_sigkill_after_round_1_then_resume_matches_an_uninterrupted_run(tmp_path):
    data = _config(tmp_path, rounds=3)
    reference = Runner(validate(data), console=QUIET).run()

    config_file = tmp_path / "tiny.toml"
    config_file.write_text(tomli_w.dumps(data))
    run_dir = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "lada", "run", str(config_file)]
    # A fresh run in a chosen folder: resume an empty folder is refused, so start it here.
    proc = subprocess.Popen(
        [*command, "--set", f'output_dir="{tmp_path / "spawn"}"'],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    spawned: Path | None = None
    while time.monotonic() < deadline:
        found = list((tmp_path / "spawn").glob("*/checkpoints/round-0001.pt"))
        if found:
            spawned = found[0].parent.parent
            break
        assert proc.poll() is None, "the run ended before round 1 was checkpointed"
        time.sleep(0.05)
    assert spawned is not None, "no round-1 checkpoint within the deadline"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (spawned / "summary.json").exists(), "killed too late: the run had finished"
    spawned.rename(run_dir)

    resumed = subprocess.run(
        [*command, "--set", f'output_dir="{tmp_path / "spawn"}"', "--resume", str(run_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming" in resumed.stdout + resumed.stderr

    assert _metrics(run_dir) == _metrics(reference.run_dir)
    assert _selections(run_dir) == _selections(reference.run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["final"] == reference.summary["final"]


def test_torn_latest_checkpoint_falls_back_to_the_previous_complete_one(tmp_path):
    data = _config(tmp_path, rounds=2)
    reference = Runner(validate(data), console=QUIET).run()
    run_dir = reference.run_dir
    assert [p.name for p in list_checkpoints(run_dir)] == ["round-0002.pt", "round-0001.pt"]

    latest = list_checkpoints(run_dir)[0]
    blob = latest.read_bytes()
    latest.write_bytes(blob[: len(blob) // 2])  # the newest file cut off mid-write

    warnings: list[str] = []
    checkpoint = load_latest(run_dir, warn=warnings.append)
    assert checkpoint.round_idx == 1 and "round-0002.pt" in warnings[0]

    expected = _metrics(run_dir)
    Runner(validate(data), run_dir=run_dir, resume=True, console=QUIET).run()
    assert _metrics(run_dir) == expected  # round 2 re-run from round 1 gives the same record


def test_a_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, 1, [{"round": 1}], {"x": torch.ones(3)}, keep=2)

    def crash(obj, handle):
        handle.write(b"half a checkpoint")
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 2, [{"round": 1}, {"round": 2}], {"x": torch.zeros(3)}, keep=2)
    monkeypatch.undo()

    assert [p.name for p in list_checkpoints(tmp_path)] == ["round-0001.pt"]
    checkpoint = load_latest(tmp_path)
    assert checkpoint.round_idx == 1 and torch.equal(checkpoint.state["x"], torch.ones(3))


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    for r in range(4):
        save_checkpoint(tmp_path, r, [], {}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["round-0003.pt", "round-0002.pt"]


def test_resume_refuses_a_folder_without_checkpoints_or_with_another_config(tmp_path):
    data = _config(tmp_path, rounds=1)
    result = Runner(validate(data), console=QUIET).run()

    changed = {**data, "train": {**data["train"], "batch_size": 4}}
    with pytest.raises(ConfigError, match="train.batch_size"):
        Runner(validate(changed), run_dir=result.run_dir, resume=True, console=QUIET)

    for path in list_checkpoints(result.run_dir):
        path.unlink()
    with pytest.raises(CheckpointError, match="no checkpoints"):
        Runner(validate(data), run_dir=result.run_dir, resume=True, console=QUIET)


def test_a_config_written_before_new_fields_existed_still_resumes(tmp_path):
    """A run folder from an older version lacks the fields added since: they count as
    unchanged while they keep their defaults; trackers may be added on a resume."""
    data = _config(tmp_path, rounds=2)
    result = Runner(validate(data), console=QUIET).run()
    (result.run_dir / "checkpoints" / "round-0002.pt").unlink()
    stored = json.loads((result.run_dir / "config.json").read_text())
    del stored["tracking"], stored["federation"]["clients_per_round"]
    del stored["evaluation"]["clients"]
    (result.run_dir / "config.json").write_text(json.dumps(stored))

    check_same_config(result.run_dir, validate(data))
    check_same_config(result.run_dir, validate({**data, "tracking": {"dir": str(tmp_path)}}))
    with pytest.raises(ConfigError, match=r"\['federation.clients_per_round'\]"):
        check_same_config(
            result.run_dir, validate({**data, "federation": {"clients_per_round": 1}})
        )


@pytest.mark.slow
@pytest.mark.parametrize("lada", [False, True], ids=["host", "lada"])
@pytest.mark.parametrize("host", ["fedcot", "fedcollm", "fedmkt", "crosslm"])
def test_every_host_resumes_from_round_1_exactly(tmp_path, host: str, lada: bool):
    """A run stopped after round 1 of 2 (its round-2 checkpoint and summary gone) and resumed
    gives the metrics, selections and final numbers of the uninterrupted run: each host's own
    state (global SLM, generated items, vocabularies) comes back with the parties."""
    data = tiny_config(tmp_path, host, lada, rounds=2)
    reference = Runner(validate(data), console=QUIET).run()
    cut = tmp_path / "cut"
    shutil.copytree(reference.run_dir, cut)
    (cut / "checkpoints" / "round-0002.pt").unlink()
    (cut / "summary.json").unlink()
    assert load_latest(cut).round_idx == 1

    Runner(validate(data), run_dir=cut, resume=True, console=QUIET).run()
    assert _metrics(cut) == _metrics(reference.run_dir)
    assert _selections(cut) == _selections(reference.run_dir)
    assert json.loads((cut / "summary.json").read_text())["final"] == reference.summary["final"]


@pytest.mark.slow
def test_two_runs_with_the_same_seed_count_the_same_bytes(tmp_path):
    """Bytes are part of the metrics: identical runs carry identical traffic, round by round
    (phase times ride in the evaluation reports, at a fixed width)."""
    data = _config(tmp_path, rounds=1)

    def traffic(run_dir: Path) -> list[dict]:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        return [json.loads(x)["traffic"] for x in lines]

    first = Runner(validate(data), console=QUIET).run()
    second = Runner(validate(data), console=QUIET).run()
    assert traffic(first.run_dir) == traffic(second.run_dir)
    assert traffic(first.run_dir)[-1]["bytes"]["evaluate/up/eval_report"] > 0
