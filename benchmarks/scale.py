"""Scale: round time, CPU and peak memory for 8, 16, 32, 64 clients, per runtime, against the
cost model of docs/scaling.md.

Each (runtime, client count) runs host + LaDa (FedCoT) in a fresh Python process, so peak memory
is that run's alone; a sampler follows the process and its children (Flower simulation workers)
with psutil and records each process's peak resident memory. Reports the federated round's wall
time (goal: linear in clients; a least-squares line and its R² are given) and memory per client
(goal: flat: the increment per added client stays constant).

Per federated round it also records the bytes on the wire (exact, from metrics.jsonl `traffic`)
and the CPU seconds of the run's process (in process: every party; read at the round's start and
at its record, so checkpoints are left out), next to what `predict_round` says: the cost model
with its constants from benchmarks/results (communication.json, models.json). CPU seconds, unlike
wall time, barely change when other jobs share the machine. `--per-round K` lets K clients take
part in each round (`federation.clients_per_round`; evaluation scores only them).

    python benchmarks/scale.py --quick --runtimes inprocess
    python benchmarks/scale.py --quick --per-round 8 --clients 64
    python benchmarks/scale.py --clients 2 4 8 16 32 --runtimes inprocess,flower-sim
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import (
    RESULTS,
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


DEFAULT_CLIENTS = [8, 16, 32, 64]


def scale_config(
    scale: str,
    n_clients: int,
    runtime: str,
    overrides: list[str],
    per_round: int | None = None,
) -> dict[str, Any]:
    sets = [
        *SIZES[scale],
        f"data.split.n_clients={n_clients}",
        "data.split.partition=iid",
        "data.split.client_domains=null",
        "lada_enabled=true",
        f"runtime={runtime}",
    ]
    if per_round is not None and per_round < n_clients:
        sets += [f"federation.clients_per_round={per_round}", 'evaluation.clients="participants"']
    return host_config("fedcot", scale, [*sets, *overrides]).model_dump(mode="json")


# --------------------------------------------------------------------------- cost model
@dataclass(frozen=True)
class CostConstants:
    """Measured constants of the cost model (docs/scaling.md), each with the file it comes from.

    Bytes: benchmarks/results/communication.json, FedCoT + LaDa at quick scale (2 clients, 24
    public items; `by_kind` sums both clients). Seconds: benchmarks/results/models.json, tiny-1m
    on one CPU thread (the LLM and the SLMs of the quick scale runs are tiny-1m).
    """

    #: An empty message (header and record framing): setup/up/empty, 1090 B for 2 clients.
    message_bytes: float = 1090 / 2
    #: A public path (id, text, log-prob, token count): (5132 / 2 - 545) / 24 items.
    path_bytes: float = (5132 / 2 - 1090 / 2) / 24
    #: An evaluation report without selections: FedCoT alone, 1856.5 B for 2 clients.
    report_bytes: float = 1856.5 / 2
    #: What LaDa adds to a report (its counters, losses and selection record): FedCoT + LaDa,
    #: 4141.5 B for 2 clients, less FedCoT alone. Mostly fixed per client; the selected ids add
    #: ~25 B an item.
    lada_report_bytes: float = (4141.5 - 1856.5) / 2
    #: Parameters of tiny-1m (both parties of the quick scale runs).
    parameters: float = 865_920
    #: FLOP/s of a training step: 6 N x 3,337 tokens/s (train_tokens_per_s, batch 32).
    train_flops: float = 6 * 865_920 * 3337.40
    #: FLOP/s of a batched forward pass: logprob_batched_gflops.
    forward_flops: float = 18.54e9
    #: FLOP/s of greedy generation: 2 N x 3,188 tokens/s (generation_tokens_per_s, batch 64).
    generate_flops: float = 2 * 865_920 * 3187.92

    def train_seconds(self, tokens: float) -> float:
        return 6 * self.parameters * tokens / self.train_flops

    def forward_seconds(self, tokens: float) -> float:
        return 2 * self.parameters * tokens / self.forward_flops

    def generate_seconds(self, tokens: float) -> float:
        return 2 * self.parameters * tokens / self.generate_flops


CONSTANTS = CostConstants()


@dataclass(frozen=True)
class RoundShape:
    """What one FedCoT + LaDa round does: sizes from the config, token lengths from the run."""

    participants: int  # k: clients taking part in the round
    evaluated: int  # clients evaluated (k, or C with evaluation.clients="all")
    n_public: int  # P
    n_train: int
    n_test: int
    local_epochs: int
    client_steps: int
    batch_size: int
    max_new_tokens: int  # L: cap of the LLM's paths and of the evaluation's answers
    negative_max_new_tokens: int  # cap of the receiver's own (negative) paths
    selected_fraction: float  # |selection| / P (round 1: lada.round1_fraction)
    first_round: bool  # round 1: the centroid of local items is embedded; FedCoT's LLM writes
    gold_tokens: float  # mean tokens of prompt + gold path (private SFT)
    pair_tokens: float  # mean tokens of prompt + a public path (LaDa's passes)


def predict_round(shape: RoundShape, c: CostConstants = CONSTANTS) -> dict[str, float]:
    """Bytes on the wire and CPU seconds of one FedCoT + LaDa round (docs/scaling.md, §2-§3).

    Bytes: k x (paths down + empty up + evaluation request + report with LaDa's selections).
    CPU: the server's LLM writes its paths once (first round), then each taking-part client runs
    private SFT, LaDa's select (embed P candidates), prepare (write |S| negatives, score 2|S|),
    fit (`client_steps` steps of batch B, positive + negative), observe (score |S|) and its
    evaluation (n_test answers). Generation is costed at the cap (an upper bound).
    """
    k, e, p = shape.participants, shape.evaluated, shape.n_public
    selected = math.ceil(shape.selected_fraction * p)
    per_client_bytes = (
        (c.message_bytes + p * c.path_bytes)  # train/down/public_paths
        + c.message_bytes  # train/up/empty
        + c.message_bytes  # evaluate/down/empty
        + c.report_bytes
        + c.lada_report_bytes  # evaluate/up/eval_report
    )
    # A client evaluated without taking part gets the request and reports no selections.
    idle_bytes = c.message_bytes + c.report_bytes
    local = shape.n_train if shape.first_round else 0
    phases = {
        "local_training": c.train_seconds(shape.local_epochs * shape.n_train * shape.gold_tokens),
        "scoring": c.forward_seconds(p * shape.pair_tokens + local * shape.gold_tokens),
        "path_generation": c.generate_seconds(selected * shape.negative_max_new_tokens)
        + c.forward_seconds(2 * selected * shape.pair_tokens),
        "distillation": c.train_seconds(
            shape.client_steps * 2 * mean_batch(selected, shape.batch_size) * shape.pair_tokens
        ),
        "filter_training": c.forward_seconds(selected * shape.pair_tokens),
    }
    evaluation = c.generate_seconds(shape.n_test * shape.max_new_tokens)
    server = 0.0
    if shape.first_round:  # FedCoT's frozen LLM writes its paths on the pool once
        server = c.generate_seconds(p * shape.max_new_tokens) + c.forward_seconds(
            p * shape.pair_tokens
        )
    client = sum(phases.values()) + evaluation
    return {
        "bytes": k * per_client_bytes + max(0, e - k) * idle_bytes,
        "bytes_per_client": per_client_bytes,
        "cpu_seconds": server + k * client + max(0, e - k) * evaluation,
        "cpu_server_seconds": server,
        "cpu_per_client_seconds": client,
        **{f"cpu_{name}_seconds": seconds for name, seconds in phases.items()},
        "cpu_evaluation_seconds": evaluation,
    }


def mean_batch(n_items: float, batch_size: int) -> float:
    """Mean minibatch of passes over `n_items` in batches of at most `batch_size`."""
    return n_items / math.ceil(n_items / batch_size) if n_items > 0 else 0.0


def relative_error(predicted: float, measured: float) -> float | None:
    """(predicted - measured) / measured; None without a measurement."""
    return None if not measured else (predicted - measured) / measured


def round_shape(config: dict[str, Any], record: dict[str, Any]) -> RoundShape:
    """The cost model's inputs for one federated round of a scale run (`metrics.jsonl` record):
    sizes from the config, mean token lengths from the clients' logged training tokens."""
    split, train, lada = config["data"]["split"], config["train"], config["lada"]
    sequences = tokens = private_tokens = 0.0
    for client in record["clients"].values():
        n_pairs = client["log"]["counters"].get("pairs_n_pairs", 0)
        for usage in client["log"]["budget"].values():
            tokens += usage["tokens"]
            # Each step forwards one minibatch of prompts with their positive and negative.
            sequences += usage["steps"] * 2 * mean_batch(n_pairs, train["batch_size"])
        for usage in client["log"]["private"].values():
            private_tokens += usage["tokens"]
    k = len(record["participants"])
    private_sequences = k * train["local_epochs"] * split["n_train"]
    negative_cap = lada.get("negative_max_new_tokens") or train["max_new_tokens"]
    return RoundShape(
        participants=k,
        evaluated=len(record["clients"]),
        n_public=split["n_public"],
        n_train=split["n_train"],
        n_test=split["n_test"],
        local_epochs=train["local_epochs"],
        client_steps=config["budget"]["client_steps"],
        batch_size=train["batch_size"],
        max_new_tokens=train["max_new_tokens"],
        negative_max_new_tokens=negative_cap,
        selected_fraction=lada["round1_fraction"],
        first_round=record["round"] == 1,
        gold_tokens=private_tokens / max(1, private_sequences),
        pair_tokens=tokens / max(1.0, sequences),
    )


def _mark_rounds(marks: list[tuple[str, int, float]]) -> None:
    """Record this process's CPU seconds when each round starts and when it is recorded."""
    from lada.experiments import runner

    draw, record = runner.participants, runner.Runner._record

    def marked_draw(client_ids: Any, per_round: Any, seed: int, round_idx: int) -> list[int]:
        marks.append(("start", round_idx, time.process_time()))
        return draw(client_ids, per_round, seed, round_idx)

    def marked_record(self: Any, rec: dict[str, Any]) -> None:
        marks.append(("end", int(rec["round"]), time.process_time()))
        record(self, rec)

    runner.participants = marked_draw  # type: ignore[assignment]
    runner.Runner._record = marked_record  # type: ignore[method-assign]


def worker(config_path: Path, result_path: Path, threads: int) -> None:
    """Run one experiment in this process and write what the parent needs."""
    setup_environment(threads)
    from lada.apps.run import run_experiment
    from lada.experiments.config import ExperimentConfig

    raw = json.loads(config_path.read_text())
    config = ExperimentConfig.model_validate(raw)
    marks: list[tuple[str, int, float]] = []
    _mark_rounds(marks)
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
    starts = {r: t for kind, r, t in marks if kind == "start"}
    ends = {r: t for kind, r, t in marks if kind == "end"}
    rounds = []
    for rec in federated:
        r = rec["round"]
        shape = round_shape(raw, rec)
        rounds.append(
            {
                "round": r,
                "participants": len(rec["participants"]),
                "wall_seconds": rec["wall_seconds"],
                "cpu_seconds": ends[r] - starts[r] if r in starts and r in ends else None,
                "bytes": rec["traffic"]["total_bytes"],
                "bytes_by_kind": rec["traffic"]["bytes"],
                "shape": shape.__dict__,
                "predicted": predict_round(shape),
            }
        )
    result_path.write_text(
        json.dumps(
            {
                "total_seconds": total,
                "setup_seconds": records[0]["wall_seconds"],
                "setup_cpu_seconds": ends[0] - starts[0] if 0 in starts and 0 in ends else None,
                "round_seconds": sum(r["wall_seconds"] for r in federated) / len(federated),
                "rounds": rounds,
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


def model_check(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-round means of measured and predicted bytes and CPU seconds, and their errors."""

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    measured_cpu = [r["cpu_seconds"] for r in rounds if r["cpu_seconds"] is not None]
    out: dict[str, Any] = {
        "participants": mean([r["participants"] for r in rounds]),
        "bytes_per_round": mean([r["bytes"] for r in rounds]),
        "predicted_bytes_per_round": mean([r["predicted"]["bytes"] for r in rounds]),
        "cpu_seconds_per_round": mean(measured_cpu) if measured_cpu else None,
        "predicted_cpu_seconds_per_round": mean([r["predicted"]["cpu_seconds"] for r in rounds]),
    }
    out["bytes_error"] = relative_error(out["predicted_bytes_per_round"], out["bytes_per_round"])
    out["cpu_error"] = (
        None
        if out["cpu_seconds_per_round"] is None
        else relative_error(out["predicted_cpu_seconds_per_round"], out["cpu_seconds_per_round"])
    )
    return out


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
    per_round: int | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "scale": scale,
        "host": "fedcot + LaDa",
        "per_round": per_round,
        "constants": CONSTANTS.__dict__,
        "runtimes": {},
    }
    for runtime in runtimes:
        rows = []
        for n in clients:
            console.print(f"[dim]scale: {runtime}, {n} clients[/]")
            config = scale_config(scale, n, runtime, overrides, per_round)
            row = measure(config, threads, timeout)
            if row["ok"]:
                row.update(model_check(row["rounds"]))
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


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.0%}"


def report(result: dict[str, Any], console: Console) -> None:
    rows, checks = [], []
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
            if "predicted_bytes_per_round" in r:
                cpu = r["cpu_seconds_per_round"]
                checks.append(
                    [
                        runtime,
                        r["clients"],
                        f"{r['participants']:.0f}",
                        f"{r['bytes_per_round'] / 1e3:.1f}",
                        f"{r['predicted_bytes_per_round'] / 1e3:.1f}",
                        _percent(r["bytes_error"]),
                        "n/a" if cpu is None else f"{cpu:.1f}",
                        f"{r['predicted_cpu_seconds_per_round']:.1f}",
                        _percent(r["cpu_error"]),
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
    if checks:
        print_table(
            console,
            "Cost model vs measured, per federated round (docs/scaling.md; CPU: the run's "
            "process, so every party only in process)",
            [
                "runtime",
                "clients",
                "taking part",
                "kB",
                "model kB",
                "error",
                "CPU s",
                "model CPU s",
                "error",
            ],
            checks,
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
    # The plot belongs to the default result file; another --out gets none.
    default_out = args.out is None or args.out.resolve() == (RESULTS / "scale.json").resolve()
    result = run(
        scale=scale_name(args),
        clients=args.clients,
        runtimes=args.runtimes.split(","),
        overrides=args.overrides,
        threads=args.threads,
        timeout=args.timeout,
        console=console,
        plot=PLOT if default_out else None,
        per_round=args.per_round,
    )
    report(result, console)
    console.print(f"wrote {write_result('scale', result, args.out, started)}")
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, nargs="+", default=DEFAULT_CLIENTS)
    parser.add_argument(
        "--per-round",
        type=int,
        help="clients taking part in each round (federation.clients_per_round); evaluation "
        "then scores only them",
    )
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
