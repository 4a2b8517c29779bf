"""Scale: round time and peak memory per process for 2, 4, 8, 16 clients, per runtime.

Each (runtime, client count) runs host + LaDa (FedCoT) in a fresh Python process, so peak memory
is that run's alone; a sampler follows the process and its children (Flower simulation workers)
with psutil and records each process's peak resident memory. Reports the federated round's wall
time (goal: linear in clients; a least-squares line and its R² are given) and memory per client
(goal: flat: the increment per added client stays constant).

    python benchmarks/scale.py --quick
    python benchmarks/scale.py --clients 2 4 8 16 32 --runtimes inprocess,flower-sim
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    ROOT,
    base_parser,
    host_config,
    make_console,
    print_table,
    scale_name,
    setup_environment,
    write_result,
)
from rich.console import Console

#: Per-client data and rounds of the scale runs, per benchmark scale.
SIZES = {
    "quick": [
        "rounds=1",
        "data.split.n_public=16",
        "data.split.n_train=8",
        "data.split.n_test=4",
        "llm.preset=tiny-1m",
        "evaluation.llm_rounds=none",
    ],
    "full": [
        "rounds=2",
        "data.split.n_public=48",
        "data.split.n_train=32",
        "data.split.n_test=8",
        "evaluation.llm_rounds=none",
    ],
}
PLOT = ROOT / "docs" / "results" / "scale.png"
SAMPLE_SECONDS = 0.2


def scale_config(scale: str, n_clients: int, runtime: str, overrides: list[str]) -> dict[str, Any]:
    sets = [
        *SIZES[scale],
        f"data.split.n_clients={n_clients}",
        "data.split.partition=iid",
        "data.split.client_domains=null",
        "lada_enabled=true",
        f"runtime={runtime}",
        *overrides,
    ]
    return host_config("fedcot", scale, sets).model_dump(mode="json")


def worker(config_path: Path, result_path: Path, threads: int) -> None:
    """Run one experiment in this process and write what the parent needs."""
    setup_environment(threads)
    from lada.apps.run import run_experiment
    from lada.experiments.config import ExperimentConfig

    config = ExperimentConfig.model_validate(json.loads(config_path.read_text()))
    started = time.perf_counter()
    result = run_experiment(config, console=Console(stderr=True, quiet=True), evaluate_llm=False)
    total = time.perf_counter() - started
    federation = getattr(result, "federation", None)
    if config.runtime != "inprocess" and federation is not None and federation.clients:
        # The clients were built in this process: the runtime asked for was not used.
        raise RuntimeError(f"runtime {config.runtime!r} requested but the run ran in process")
    records = [
        json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()
    ]
    federated = [r for r in records if r["round"] >= 1]
    result_path.write_text(
        json.dumps(
            {
                "total_seconds": total,
                "setup_seconds": records[0]["wall_seconds"],
                "round_seconds": sum(r["wall_seconds"] for r in federated) / len(federated),
                "run_dir": str(result.run_dir),
            }
        )
    )


def measure(config: dict[str, Any], threads: int, timeout: float) -> dict[str, Any]:
    """Run a config in a child process; sample peak RSS of it and its descendants."""
    import psutil

    with tempfile.TemporaryDirectory() as tmp:
        config_path, result_path = Path(tmp) / "config.json", Path(tmp) / "result.json"
        config_path.write_text(json.dumps(config))
        command = [
            sys.executable,
            __file__,
            "--worker",
            str(config_path),
            str(result_path),
            "--threads",
            str(threads),
        ]
        started = time.perf_counter()
        # stderr goes to a file, not a pipe: a chatty child (Ray logs) would fill a pipe and block.
        stderr_path = Path(tmp) / "stderr.txt"
        stderr_file = stderr_path.open("w")
        child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr_file)
        peaks: dict[int, float] = {}
        cpu: dict[int, float] = {}
        names: dict[int, str] = {}
        peak_total = 0.0
        root = psutil.Process(child.pid)
        timed_out = False
        procs: list[psutil.Process] = []
        while child.poll() is None:
            total = 0.0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                procs = []
            for proc in procs:
                try:
                    rss = proc.memory_info().rss / 2**20
                    times = proc.cpu_times()
                    cpu[proc.pid] = times.user + times.system
                    names.setdefault(proc.pid, proc.name())
                except psutil.Error:
                    continue
                peaks[proc.pid] = max(peaks.get(proc.pid, 0.0), rss)
                total += rss
            peak_total = max(peak_total, total)
            if time.perf_counter() - started > timeout:
                timed_out = True
                for proc in reversed(procs):  # the run and every process it started
                    try:
                        proc.kill()
                    except psutil.Error:
                        pass
                break
            time.sleep(SAMPLE_SECONDS)
        child.wait()
        stderr_file.close()
        stderr = stderr_path.read_text(errors="replace")
        wall = time.perf_counter() - started
        if child.returncode != 0 or not result_path.exists():
            lines = [x for x in stderr.strip().splitlines() if "warn" not in x.lower()]
            error = [f"timed out after {timeout:.0f} s"] if timed_out else lines[-1:] or ["failed"]
            return {"ok": False, "error": error, "wall_seconds": wall}
        out = json.loads(result_path.read_text())
    main_peak = peaks.get(child.pid, 0.0)
    workers = [v for pid, v in peaks.items() if pid != child.pid]
    return {
        "ok": True,
        "wall_seconds": wall,
        **out,
        # CPU seconds (user + system, last sample per process): unlike wall time, barely
        # affected by other jobs on a shared machine.
        "cpu_seconds": sum(cpu.values()),
        "peak_rss_main_mb": main_peak,
        "peak_rss_total_mb": peak_total,
        "n_processes": len(peaks),
        "peak_rss_max_worker_mb": max(workers) if workers else None,
    }


def linear_fit(xs: list[float], ys: list[float]) -> dict[str, float] | None:
    """Least-squares y = a + b x, with R²."""
    if len(xs) < 2:
        return None
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    intercept = my - slope * mx
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys))
    ss_tot = sum((y - my) ** 2 for y in ys)
    return {"intercept": intercept, "slope": slope, "r2": 1 - ss_res / ss_tot if ss_tot else 1.0}


def run(
    *,
    scale: str,
    clients: list[int],
    runtimes: list[str],
    overrides: list[str],
    threads: int,
    timeout: float,
    console: Console,
    plot: Path | None = PLOT,
) -> dict[str, Any]:
    result: dict[str, Any] = {"scale": scale, "host": "fedcot + LaDa", "runtimes": {}}
    for runtime in runtimes:
        rows = []
        for n in clients:
            console.print(f"[dim]scale: {runtime}, {n} clients[/]")
            row = measure(scale_config(scale, n, runtime, overrides), threads, timeout)
            rows.append({"clients": n, **row})
            if not row["ok"]:
                console.print(f"[yellow]{runtime} with {n} clients failed: {row['error']}[/]")
                break
        ok = [r for r in rows if r["ok"]]
        xs = [float(r["clients"]) for r in ok]
        time_fit = linear_fit(xs, [r["round_seconds"] for r in ok])
        cpu_fit = linear_fit(xs, [r["cpu_seconds"] for r in ok])
        memory_fit = linear_fit(xs, [r["peak_rss_total_mb"] for r in ok])
        increments = [
            (b["peak_rss_total_mb"] - a["peak_rss_total_mb"]) / (b["clients"] - a["clients"])
            for a, b in zip(ok, ok[1:])
        ]
        result["runtimes"][runtime] = {
            "rows": rows,
            "round_time_fit": time_fit,
            "cpu_fit": cpu_fit,
            "memory_fit": memory_fit,
            "memory_increment_mb_per_client": increments,
        }
    if plot is not None and any(
        r["ok"] for res in result["runtimes"].values() for r in res["rows"]
    ):
        from lada.experiments.plots import plot_scale

        plot_scale(result["runtimes"], plot)
        result["plot"] = str(plot)
    return result


def report(result: dict[str, Any], console: Console) -> None:
    rows = []
    for runtime, res in result["runtimes"].items():
        for r in res["rows"]:
            if not r["ok"]:
                rows.append([runtime, r["clients"], "failed", "", "", "", "", " ".join(r["error"])])
                continue
            rows.append(
                [
                    runtime,
                    r["clients"],
                    f"{r['round_seconds']:.1f}",
                    f"{r['total_seconds']:.1f}",
                    f"{r['cpu_seconds']:.1f}" if "cpu_seconds" in r else "n/a",
                    f"{r['peak_rss_main_mb']:.0f}",
                    f"{r['peak_rss_total_mb']:.0f}",
                    f"{r['n_processes']}",
                ]
            )
    print_table(
        console,
        f"Scale ({result['scale']} scale, {result['host']})",
        [
            "runtime",
            "clients",
            "round s",
            "run s",
            "run CPU s",
            "peak RSS main MB",
            "peak RSS all MB",
            "processes",
        ],
        rows,
    )
    for runtime, res in result["runtimes"].items():
        fit, mem, cpu = res["round_time_fit"], res["memory_fit"], res.get("cpu_fit")
        if fit and mem:
            console.print(
                f"{runtime}: round time ≈ {fit['intercept']:.1f} + {fit['slope']:.2f}·clients s "
                f"(R² {fit['r2']:.3f}); memory ≈ {mem['intercept']:.0f} + {mem['slope']:.1f}·"
                f"clients MB (R² {mem['r2']:.3f})"
                + (
                    f"; run CPU ≈ {cpu['intercept']:.1f} + {cpu['slope']:.2f}·clients s "
                    f"(R² {cpu['r2']:.3f})"
                    if cpu
                    else ""
                )
            )


def run_cli(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    setup_environment(args.threads)
    console = make_console()
    result = run(
        scale=scale_name(args),
        clients=args.clients,
        runtimes=args.runtimes.split(","),
        overrides=args.overrides,
        threads=args.threads,
        timeout=args.timeout,
        console=console,
    )
    report(result, console)
    console.print(f"wrote {write_result('scale', result, args.out, started)}")
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument(
        "--runtimes", default="inprocess", help="comma-separated: inprocess,flower-sim"
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds per run")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        threads = int(sys.argv[5]) if len(sys.argv) > 5 else 1
        os.environ.setdefault("TQDM_DISABLE", "1")
        worker(Path(sys.argv[2]), Path(sys.argv[3]), threads)
        return
    parser = base_parser(__doc__)
    add_arguments(parser)
    run_cli(parser.parse_args())


if __name__ == "__main__":
    main()
