"""The Flower `ServerApp`: the server party (LLM, public pool) and the round loop.

`flwr run .` starts it with the run config of `pyproject.toml` (`[tool.flwr.app.config]`):
`config` is the experiment config (a path, or inline JSON), `overrides` are `--set`-style
assignments separated by `;`, `run-dir` the run folder (default: a new one under the config's
`output_dir`), `wait-for-clients-s` how long to wait for the client nodes to connect.

`resume = true` (with `run-dir`) continues that run folder from its last complete round: the
server reloads its checkpoint and every client re-attaches to its own saved state as of that
round (`lada.federation.client_state`). `audit = true` writes every string that crossed to
`audit.jsonl` in the run folder (for the privacy check), and `evaluate-llm = false` leaves the
experimenter's LLM scoring out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from rich.console import Console

from lada.experiments.config import ExperimentConfig, apply_override, load_config, validate
from lada.experiments.runner import Runner, RunResult, ServerSide
from lada.experiments.setup import build_server, load_split
from lada.federation.flower_runtime import FlowerRuntime
from lada.federation.traffic import write_audit
from lada.hosts.registry import make_host


def build_server_side(grid: Grid, config: ExperimentConfig, console: Console) -> ServerSide:
    """The server party and a Flower runtime to its clients.

    The server derives the split only for the public pool and for the experimenter's LLM score
    on the union of the clients' test items; it never sends client items anywhere. With
    client-held data files (`data-path` on the nodes) there is no such union to score on.
    """
    split = load_split(config)
    server = build_server(config, split.public_pool, console)
    host = make_host(config.host, config.train, config.lada_enabled, config.budget)
    runtime = FlowerRuntime(
        grid,
        config.federation,
        config.data.split.n_clients,
        config.model_dump_json(),
        host,
        server,
        console,
    )
    cap = config.evaluation.llm_max_items_per_client
    union = [it for share in split.clients for it in share.test[:cap]]
    return ServerSide(host, server, runtime, union)


def serve(
    grid: Grid,
    config: ExperimentConfig,
    *,
    run_dir: Path | None = None,
    console: Console | None = None,
    wait_for_clients_s: float = 120.0,
    **runner_kwargs: Any,
) -> RunResult:
    """Run the experiment's rounds against the clients behind `grid`; write the run folder."""
    console = console or Console(stderr=True)
    side = build_server_side(grid, config, console)
    runner = Runner(config, run_dir=run_dir, console=console, server_side=side, **runner_kwargs)
    runtime: FlowerRuntime = side.runtime  # type: ignore[assignment]
    runtime.audit = runner.audit
    runtime.connect(wait_for_clients_s)
    return runner.run()


def config_from_run_config(run_config: dict[str, Any]) -> ExperimentConfig:
    source = str(run_config.get("config", "")).strip()
    overrides = [x.strip() for x in str(run_config.get("overrides", "")).split(";") if x.strip()]
    if not source:
        raise ValueError("run config: 'config' must name an experiment config file")
    if source.startswith("{"):
        data = json.loads(source)
        for assignment in overrides:
            apply_override(data, assignment)
        return validate(data, origin="run config 'config'")
    return load_config(Path(source).expanduser(), overrides)


app = ServerApp()


def flag(run_config: dict[str, Any], key: str, default: bool) -> bool:
    """A true/false entry of the run config (a TOML boolean or its text)."""
    value = str(run_config.get(key, default)).strip().lower()
    if value not in ("true", "false"):
        raise ValueError(f"run config: {key!r} must be true or false, got {value!r}")
    return value == "true"


@app.main()
def main(grid: Grid, context: Context) -> None:
    run_config = dict(context.run_config)
    config = config_from_run_config(run_config)
    run_dir = str(run_config.get("run-dir", "")).strip()
    wait = float(run_config.get("wait-for-clients-s", 120.0))
    resume = flag(run_config, "resume", False)
    if resume and not run_dir:
        raise ValueError("run config: resume = true needs 'run-dir', the run folder to continue")
    audit = flag(run_config, "audit", False)
    result = serve(
        grid,
        config,
        run_dir=Path(run_dir) if run_dir else None,
        wait_for_clients_s=wait,
        resume=resume,
        audit=audit,
        evaluate_llm=flag(run_config, "evaluate-llm", True),
    )
    if result.audit is not None:
        write_audit(result.run_dir, result.audit)
