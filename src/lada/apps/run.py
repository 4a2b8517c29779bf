"""Run one experiment config on the runtime it names."""

from __future__ import annotations

from typing import Any

from lada.apps.simulation import run_flower_simulation
from lada.experiments.config import ExperimentConfig
from lada.experiments.runner import Runner, RunResult
from lada.experiments.tracking import require_backends


def run_experiment(config: ExperimentConfig, **kwargs: Any) -> RunResult:
    """Run `config` in process (`runtime = "inprocess"`) or on Flower's simulation engine
    (`"flower-sim"`); keyword arguments go to `Runner` (console, run_dir, resume, audit, ...)."""
    require_backends(config.tracking.backends)  # before Flower starts its simulation
    if config.runtime == "flower-sim":
        return run_flower_simulation(config, **kwargs)
    return Runner(config, **kwargs).run()
