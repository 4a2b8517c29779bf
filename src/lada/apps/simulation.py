"""`lada run CONFIG --runtime flower-sim`: the same experiment through Flower's simulation runtime.

The `ServerApp` runs in this process (so it writes the run folder like the in-process runtime);
each client is a simulated SuperNode run by Flower's Ray backend with `partition-id` and
`num-partitions` in its node config, reserving `federation.cpus_per_client` cores and
`federation.gpus_per_client` GPUs.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from rich.console import Console

from lada.apps.client_app import make_client_app
from lada.apps.server_app import serve
from lada.experiments.config import ExperimentConfig
from lada.experiments.runner import RunResult


def run_flower_simulation(
    config: ExperimentConfig,
    *,
    run_dir: Path | None = None,
    console: Console | None = None,
    **runner_kwargs: Any,
) -> RunResult:
    """Run `config` with Flower's simulation runtime; returns the run's result like `Runner.run`."""
    from flwr.simulation import run_simulation

    console = console or Console(stderr=True)
    if runner_kwargs.get("resume"):
        raise ValueError("runtime: resume is available for the in-process runtime only")
    outcome: dict[str, Any] = {}
    server_app = ServerApp()

    @server_app.main()
    def _main(grid: Grid, context: Context) -> None:
        outcome["result"] = serve(
            grid, config, run_dir=run_dir, console=console, wait_for_clients_s=60, **runner_kwargs
        )

    fed = config.federation
    n = config.data.split.n_clients
    init_args: dict[str, int] = {"num_cpus": max(1, int(round(n * fed.cpus_per_client)))}
    if fed.gpus_per_client == 0:
        init_args["num_gpus"] = 0
    backend_config = {
        "client_resources": {"num_cpus": fed.cpus_per_client, "num_gpus": fed.gpus_per_client},
        "init_args": init_args,
    }
    # Ray workers inherit the environment: the model cache and offline mode travel with it.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.getLogger("flwr").setLevel(logging.WARNING)
    run_simulation(
        server_app=server_app,
        client_app=make_client_app(),
        num_supernodes=n,
        backend_config=backend_config,  # type: ignore[arg-type]
    )
    if "result" not in outcome:
        raise RuntimeError("Flower simulation ended without a result (see the log above)")
    return outcome["result"]
