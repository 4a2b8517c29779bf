"""The Flower simulation runtime gives the same run as the in-process runtime, and a simulation
killed mid-run resumes to the run it would have given."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import tomli_w
from rich.console import Console

from lada.apps.run import run_experiment
from lada.experiments.config import validate
from lada.experiments.runner import Runner
from lada.models.presets import cache_dir
from tests.test_end_to_end import tiny_config
from tests.test_resume import _comparable, _metrics, _selections

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
    assert flower.summary["total_bytes"] == inprocess.summary["total_bytes"]
    # The privacy audit saw the same strings cross on both runtimes.
    assert flower.audit.records and sorted(flower.audit.records) == sorted(inprocess.audit.records)
    # The simulated clients kept their state in the run folder, not in the model cache.
    states = sorted((flower.run_dir / "client-state").glob("run-*/client-*/party.pt"))
    assert [p.parent.name for p in states] == ["client-0", "client-1"]
    key = states[0].parent.parent.name
    assert not (cache_dir() / "flower-clients" / key).exists()


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and everything it started (the SuperLink, the simulation, Ray)."""
    root = psutil.Process(pid)
    tree = [*root.children(recursive=True), root]
    for proc in tree:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(tree, timeout=30)


@pytest.mark.slow
def test_a_flower_simulation_killed_after_round_1_resumes_to_the_uninterrupted_run(tmp_path):
    data = {**tiny_config(tmp_path, "fedcot", True, rounds=3), "runtime": "flower-sim"}
    # The uninterrupted run, in process: the test above holds the two runtimes to the same run.
    reference = Runner(validate({**data, "runtime": "inprocess"}), console=QUIET).run()

    config_file = tmp_path / "tiny.toml"
    config_file.write_text(tomli_w.dumps(data))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    spawn = tmp_path / "spawn"
    command = [sys.executable, "-m", "lada", "run", str(config_file), "--runtime", "flower-sim"]
    command += ["--set", f'output_dir="{spawn}"']
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    run_dir: Path | None = None
    try:
        while time.monotonic() < deadline:
            found = list(spawn.glob("*/checkpoints/round-0001.pt"))
            if found:
                run_dir = found[0].parent.parent
                break
            assert proc.poll() is None, "the run ended before round 1 was checkpointed"
            time.sleep(0.05)
    finally:
        _kill_tree(proc.pid)  # the server side with its simulated clients, mid-round 2
    assert run_dir is not None, "no round-1 checkpoint within the deadline"
    assert not (run_dir / "summary.json").exists(), "killed too late: the run had finished"

    resumed = subprocess.run(
        [*command, "--resume", str(run_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout + resumed.stderr

    assert _metrics(run_dir) == _metrics(reference.run_dir)
    assert _selections(run_dir) == _selections(reference.run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["final"] == reference.summary["final"]
    assert summary["total_bytes"] == reference.summary["total_bytes"]
