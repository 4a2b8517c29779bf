"""`lada run CONFIG --runtime flower-sim`: the same experiment on Flower's simulation runtime.

Flower 1.41 deprecates `flwr.simulation.run_simulation` (the in-process entry) for `flwr run`
against a SuperLink that runs its simulation runtime, so this is what runs here: a private
SuperLink on 127.0.0.1 started with `--simulation` (`lada.federation.local_deployment`, with a
throw-away Flower home), and `flwr run` of this project's Flower app (`[tool.flwr.app]` in
`pyproject.toml`, the same app a deployment runs) with the experiment in its run config. Flower
then runs the `ServerApp` in a process of its own, which writes the run folder as the in-process
runtime does, and each client as a simulated SuperNode (`partition-id`, `num-partitions` in its
node config) on the Ray backend, reserving `federation.cpus_per_client` cores (whole cores: the
simulation config takes no fractions) and `federation.gpus_per_client` GPUs. Nothing is
downloaded: the app's dependencies are those of this environment.

The simulated clients keep their state (`lada.federation.client_state`: each one's SLM, filter,
reward memory and optimizer, with snapshots of the last `checkpoint.keep` rounds) in the run
folder's `client-state/`, so it goes where the run goes and the model cache does not grow with
every run. `resume=True` continues a run folder from its last complete round, the clients
re-attaching to that state (a run whose clients kept it in the default place, as simulations
once did, has it moved in first); `audit=True` has the ServerApp write what crossed to the run
folder, read back here.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections import deque
from pathlib import Path

import tomli_w
from rich.console import Console
from rich.markup import escape

from lada.experiments.checkpoint import CheckpointError, list_checkpoints, load_latest
from lada.experiments.config import ExperimentConfig
from lada.experiments.runner import RunResult, check_same_config, new_run_dir
from lada.federation.client_state import STATE_DIR_ENV, default_state_base
from lada.federation.local_deployment import LocalDeployment
from lada.federation.traffic import read_audit

#: Folder of the run folder where the simulated clients keep their states.
CLIENT_STATE_DIR = "client-state"
#: The project folder, whose `pyproject.toml` declares the Flower app (a source checkout).
APP_DIR = Path(__file__).resolve().parents[3]


def app_dir() -> Path:
    """The folder of the Flower app to run (this project's source folder)."""
    manifest = APP_DIR / "pyproject.toml"
    if not manifest.is_file() or "[tool.flwr.app]" not in manifest.read_text():
        raise FileNotFoundError(
            f"{manifest}: no Flower app declared here; the flower-sim runtime runs the app of a "
            "lada source folder (pip install -e .)"
        )
    return APP_DIR


def simulation_actors(config: ExperimentConfig, cpus_per_client: int) -> int:
    """How many clients run at once: `federation.simulation_actors`, or as many as this
    machine's cores hold; never more than the clients."""
    n = config.data.split.n_clients
    asked = config.federation.simulation_actors
    fits = max(1, (os.cpu_count() or 1) // cpus_per_client)
    return min(n, asked if asked is not None else fits)


def federation_config(config: ExperimentConfig) -> str:
    """The simulation's size and each simulated client's reservation, as `flwr run` takes it:
    Ray gets CPUs for `simulation_actors` clients at a time, so that many actors run them."""
    fed = config.federation
    n = config.data.split.n_clients
    cpus = max(1, math.ceil(fed.cpus_per_client))
    actors = simulation_actors(config, cpus)
    return (
        f"num-supernodes={n} client-resources-num-cpus={cpus} "
        f"client-resources-num-gpus={fed.gpus_per_client} init-args-num-cpus={actors * cpus}"
        + (" init-args-num-gpus=0" if fed.gpus_per_client == 0 else "")
    )


def adopt_earlier_client_state(run_dir: Path, console: Console) -> Path | None:
    """Move a run's client states from where simulations used to keep them into the run folder.

    Simulations started before the run folder held `client-state/` left their clients' states
    in the default state folder (`LADA_CLIENT_STATE_DIR`, else the model cache's
    `flower-clients/`), under `run-<run key>/`. A resume of such a run moves that folder into
    `RUN_DIR/client-state/`, where the resumed clients look. Returns the new place, or None when
    there was nothing to move (the run folder has its own states, or none are kept anywhere)."""
    target = run_dir / CLIENT_STATE_DIR
    if target.exists():
        return None
    try:
        latest = load_latest(run_dir, warn=lambda _: None)  # the runner reports torn ones
    except CheckpointError:
        return None
    key = getattr(latest.state.get("runtime"), "run_key", None)  # None: no Flower run wrote it
    if key is None:
        return None
    earlier = default_state_base() / f"run-{key}"
    if not earlier.is_dir():
        return None
    target.mkdir(parents=True)
    moved = Path(shutil.move(str(earlier), str(target / earlier.name)))
    console.print(f"moved the clients' states of this run from {earlier} to {moved}")
    return moved


def run_flower_simulation(
    config: ExperimentConfig,
    *,
    run_dir: Path | None = None,
    console: Console | None = None,
    resume: bool = False,
    audit: bool = False,
    evaluate_llm: bool = True,
) -> RunResult:
    """Run `config` on Flower's simulation runtime; returns the run's result like `Runner.run`
    (its `audit` read back from the run folder, no `federation`: the parties lived elsewhere)."""
    console = console or Console(stderr=True)
    if resume:
        if run_dir is None:
            raise ValueError("resume: give the run folder to resume")
        check_same_config(run_dir, config)
        if not list_checkpoints(run_dir):
            raise CheckpointError(f"{run_dir}: no checkpoints to resume from")
        adopt_earlier_client_state(run_dir.resolve(), console)
    run_dir = (run_dir or new_run_dir(config)).resolve()
    run_config = {
        "config": config.model_dump_json(),
        "run-dir": str(run_dir),
        "resume": resume,
        "audit": audit,
        "evaluate-llm": evaluate_llm,
        "wait-for-clients-s": 60,
    }
    # Flower's processes inherit the environment: the model cache and offline mode travel too.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    tail: deque[str] = deque(maxlen=40)

    def echo(line: str) -> None:
        tail.append(line)
        console.print(escape(line), highlight=False)

    with tempfile.TemporaryDirectory(prefix="lada-flower-sim-") as work:
        settings = Path(work) / "run-config.toml"
        settings.write_text(tomli_w.dumps(run_config))
        n = config.data.split.n_clients
        # The simulated clients keep their state in the run folder (not the model cache), so a
        # run's client states go with it, are found by a resume, and go when it is deleted.
        states = {STATE_DIR_ENV: str(run_dir / CLIENT_STATE_DIR)}
        with LocalDeployment(Path(work) / "flower", n, simulation=True, env=states) as simulation:
            status, details = simulation.simulate(
                app_dir(), settings, federation_config(config), echo
            )
            if not status.endswith(":completed"):
                log = simulation.log("superlink")[-3000:]
                raise RuntimeError(
                    f"Flower simulation ended {status}: {details}\n"
                    + "\n".join(tail)
                    + f"\nsuperlink log:\n{log}"
                )
    summary = json.loads((run_dir / "summary.json").read_text())
    return RunResult(run_dir, summary, read_audit(run_dir) if audit else None)
