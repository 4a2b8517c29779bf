"""One experiment round through each runtime: in-process, Flower simulation, Flower deployment.

Runs the same config (default: the quickstart with one round) three times, side by side, and
reports the wall time of round 0 (setup + warm-up + evaluation) and round 1 and the bytes per
message kind of round 1, read from each run's `metrics.jsonl`. The deployment starts a real
`flower-superlink` and one `flower-supernode` per client on 127.0.0.1 (insecure); each node
answers through its long-lived worker (`lada.apps.client_front`), and the runtime
`flower-deployment-no-worker` answers every message in a fresh ClientApp process instead.

    python benchmarks/runtimes.py    # table + benchmarks/results/runtimes.json
    python benchmarks/runtimes.py --runtimes inprocess,flower-sim
    python benchmarks/runtimes.py --config configs/tiny.toml --set rounds=2 \
        --runtimes inprocess,flower-deployment,flower-deployment-no-worker
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from lada.apps.run import run_experiment
from lada.experiments.config import load_config
from lada.federation.local_deployment import LocalDeployment

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path(__file__).parent / "results" / "runtimes.json"


def _rounds(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _deploy(
    config_path: Path, overrides: list[str], n_clients: int, work: Path, worker: bool
) -> Path:
    """A local deployment run; `worker=False` answers each message in its own ClientApp
    process (node config `client-worker=false`), as Flower does without the node's worker."""
    name = "deployment" if worker else "deployment-no-worker"
    run_dir = work / f"{name}-run"
    node_configs = [
        f"partition-id={i} num-partitions={n_clients} client-worker={str(worker).lower()}"
        for i in range(n_clients)
    ]
    with LocalDeployment(work / name, n_clients, node_configs=node_configs) as deployment:
        deployment.submit(REPO, config_path, run_dir, overrides=";".join(overrides))
        deadline = time.monotonic() + 3600
        while not (run_dir / "summary.json").exists():
            if time.monotonic() > deadline:
                raise TimeoutError("deployment run did not finish within an hour")
            time.sleep(2)
    return run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "quickstart.toml")
    parser.add_argument("--set", dest="overrides", action="append", default=["rounds=1"])
    parser.add_argument("--runtimes", default="inprocess,flower-sim,flower-deployment")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads of this process (as each client)"
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    console = Console()
    config = load_config(args.config, args.overrides)
    n_clients = config.data.split.n_clients
    work = Path(tempfile.mkdtemp(prefix="lada-runtimes-"))
    results: dict[str, Any] = {}
    for runtime in args.runtimes.split(","):
        console.print(f"[bold]{runtime}[/]")
        started = time.perf_counter()
        if runtime in ("flower-deployment", "flower-deployment-no-worker"):
            worker = runtime == "flower-deployment"
            run_dir = _deploy(args.config.resolve(), args.overrides, n_clients, work, worker)
        else:
            cfg = config.model_copy(update={"runtime": runtime})
            run_dir = run_experiment(cfg, run_dir=work / f"{runtime}-run", console=console).run_dir
        rounds = _rounds(run_dir)
        results[runtime] = {
            "total_seconds": time.perf_counter() - started,
            "round_seconds": {r["round"]: r["wall_seconds"] for r in rounds},
            "round_bytes": {r["round"]: r["traffic"]["bytes"] for r in rounds},
            "mean_slm_accuracy": [r["mean_slm_accuracy"] for r in rounds],
        }
    table = Table(title=f"{args.config.name} ({' '.join(args.overrides)}): one round per runtime")
    table.add_column("runtime")
    table.add_column("round 0 s", justify="right")
    table.add_column("round 1 s", justify="right")
    table.add_column("mean round >= 1 s", justify="right")
    table.add_column("vs in-process", justify="right")
    table.add_column("whole run s", justify="right")
    table.add_column("round 1 bytes by kind")
    for row in results.values():
        federated = [v for r, v in row["round_seconds"].items() if r >= 1]
        row["mean_round_seconds"] = sum(federated) / len(federated)
    base = results.get("inprocess", {}).get("mean_round_seconds")
    for runtime, row in results.items():
        kinds = ", ".join(f"{k}={v}" for k, v in sorted(row["round_bytes"][1].items()))
        row["round_ratio_to_inprocess"] = row["mean_round_seconds"] / base if base else None
        table.add_row(
            runtime,
            f"{row['round_seconds'][0]:.1f}",
            f"{row['round_seconds'][1]:.1f}",
            f"{row['mean_round_seconds']:.1f}",
            f"{row['round_ratio_to_inprocess']:.2f}x" if base else "",
            f"{row['total_seconds']:.1f}",
            kinds,
        )
    console.print(table)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "config": str(args.config),
                "overrides": args.overrides,
                "machine": {"cpus": os.cpu_count(), "processor": platform.processor()},
                "threads": args.threads,
                "load_average_at_end": os.getloadavg(),
                "commit": commit,
                "date": time.strftime("%Y-%m-%d"),
                "results": results,
            },
            indent=2,
        )
    )
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
