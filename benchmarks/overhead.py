"""Overhead: wall time per phase per round, and LaDa's added time as a share of the host round.

Reads the efficacy runs (host alone, host + LaDa, host + LaDa at equal tokens; the run cache
makes them free after `efficacy.py` in one session). Phases are the parties' `RoundLog` timings
summed over the server and all clients: local training, path generation, scoring (LaDa's
featurise + select), filter training (LaDa's rewards + f1/f2 update), distillation, aggregation,
evaluation, and the hosts' own (logits, alignment, item generation). Rounds run clients one after
another in process, so a round's wall time is about the sum of its phases.

LaDa's added time = (round wall time with LaDa - without) / round wall time without, and the
share of LaDa's own phases (scoring, filter training, and the extra path generation for its
negatives) in the host round. Goal: <= 15%.

    python benchmarks/overhead.py --quick

At the decisive experiment's scale, read the runs `benchmarks/proof.py` cached (its host arm and
every LaDa arm ran side by side, two at a time, in one command) instead of running anything:

    python benchmarks/overhead.py --proof-cache benchmarks/results/proof_runs/main
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from common import (
    HOSTS,
    ROOT,
    RunCache,
    RunRecord,
    cli_main,
    equal_budget,
    host_config,
    print_table,
    run_benchmark,
    scale_name,
)
from rich.console import Console

GOAL_FRACTION = 0.15
PHASES = (
    "local_training",
    "path_generation",
    "scoring",
    "filter_training",
    "distillation",
    "aggregation",
    "evaluation",
)
LADA_PHASES = ("scoring", "filter_training")
PLOT = ROOT / "docs" / "results" / "overhead_phases.png"


def phase_seconds(record: RunRecord) -> dict[str, float]:
    """Seconds per phase per federated round, summed over parties, averaged over rounds."""
    rounds = record.federated_rounds()
    totals: dict[str, float] = defaultdict(float)
    for r in rounds:
        logs = [c["log"] for c in r["clients"].values()] + [r["server_log"]]
        for log in logs:
            for phase, seconds in log["timings"].items():
                totals[phase] += seconds
    return {p: s / max(1, len(rounds)) for p, s in totals.items()}


def round_seconds(record: RunRecord) -> float:
    rounds = record.federated_rounds()
    return statistics.fmean(r["wall_seconds"] for r in rounds) if rounds else float("nan")


def host_overhead(records: dict[str, list[RunRecord]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for variant, runs in records.items():
        phases: dict[str, list[float]] = defaultdict(list)
        for run in runs:
            for phase, seconds in phase_seconds(run).items():
                phases[phase].append(seconds)
        out[variant] = {
            "round_seconds": statistics.fmean(round_seconds(r) for r in runs),
            "phase_seconds": {p: statistics.fmean(v) for p, v in sorted(phases.items())},
        }
    host = out["host"]
    for variant in [v for v in out if v != "host"]:
        row = out[variant]
        base = host["round_seconds"]
        extra_generation = max(
            0.0,
            row["phase_seconds"].get("path_generation", 0.0)
            - host["phase_seconds"].get("path_generation", 0.0),
        )
        own = sum(row["phase_seconds"].get(p, 0.0) for p in LADA_PHASES) + extra_generation
        row["added_wall_fraction"] = (row["round_seconds"] - base) / base
        row["lada_phase_seconds"] = own
        row["lada_phase_fraction"] = own / base
        row["goal_met"] = row["lada_phase_fraction"] <= GOAL_FRACTION
    return out


def proof_records(
    cache_dir: Path, seeds: list[int] | None
) -> tuple[dict[str, list[RunRecord]], list[int]]:
    """The finished runs of `benchmarks/proof.py`'s cache, per arm, on the seeds every arm has.

    Its layout is `<arm>/seed<k>/run`; an unfinished run (no summary yet) is left out.
    """
    found: dict[str, dict[int, Path]] = defaultdict(dict)
    for run_dir in sorted(cache_dir.glob("*/seed*/run")):
        if (run_dir / "summary.json").exists():
            seed = int(run_dir.parent.name.removeprefix("seed"))
            found[run_dir.parent.parent.name][seed] = run_dir
    if "host" not in found:
        raise SystemExit(f"{cache_dir}: no finished 'host' run (expected host/seed<k>/run)")
    common = set.intersection(*(set(runs) for runs in found.values()))
    if seeds:
        common &= set(seeds)
    if not common:
        raise SystemExit(f"{cache_dir}: no seed finished in every arm ({dict(found)})")
    used = sorted(common)
    records = {
        arm: [RunCache.load_record(f"{arm}/seed{s}", arm, s, runs[s], {}) for s in used]
        for arm, runs in found.items()
    }
    return records, used


def run_proof(cache_dir: Path, seeds: list[int] | None) -> dict[str, Any]:
    """Phase seconds of the decisive experiment's arms (FedCoT), from its cached runs."""
    records, used = proof_records(cache_dir, seeds)
    order = ["host", *sorted(a for a in records if a != "host")]
    return {
        "scale": "proof",
        "seeds": used,
        "hosts": {"fedcot": host_overhead({arm: records[arm] for arm in order})},
    }


def run(
    *,
    scale: str,
    hosts: list[str],
    seeds: list[int] | None,
    overrides: list[str],
    cache: RunCache,
    plot: Path | None = PLOT,
) -> dict[str, Any]:
    result: dict[str, Any] = {"scale": scale, "hosts": {}}
    for host in hosts:
        base = host_config(host, scale, overrides)
        records: dict[str, list[RunRecord]] = {"host": [], "lada": [], "lada_equal": []}
        for seed in seeds or base.seeds:
            match = equal_budget(cache, base, seed)
            records["host"].append(match.host)
            records["lada"].append(match.lada)
            records["lada_equal"].append(match.lada_equal)
        result["hosts"][host] = host_overhead(records)
    if plot is not None:
        from lada.experiments.plots import plot_phase_seconds

        plot_phase_seconds(
            {
                f"{host} {variant}": row["phase_seconds"]
                for host, variants in result["hosts"].items()
                for variant, row in variants.items()
            },
            plot,
        )
        result["plot"] = str(plot)
    return result


def report(result: dict[str, Any], console: Console) -> None:
    rows = []
    for host, variants in result["hosts"].items():
        for variant, row in variants.items():
            phases = row["phase_seconds"]
            rows.append(
                [
                    f"{host} {variant}",
                    f"{row['round_seconds']:.1f}",
                    *(f"{phases.get(p, 0.0):.1f}" for p in PHASES),
                    f"{100 * row['added_wall_fraction']:+.0f}%"
                    if "added_wall_fraction" in row
                    else "",
                    f"{100 * row['lada_phase_fraction']:.0f}%"
                    if "lada_phase_fraction" in row
                    else "",
                ]
            )
    print_table(
        console,
        f"Seconds per round by phase, summed over parties ({result['scale']} scale; goal: "
        f"LaDa phases <= {GOAL_FRACTION:.0%} of the host round)",
        [
            "run",
            "round s",
            "local",
            "paths",
            "scoring",
            "filter",
            "distill",
            "aggr.",
            "eval",
            "Δ wall",
            "LaDa share",
        ],
        rows,
    )


def run_cli(args: argparse.Namespace, cache: RunCache | None = None) -> dict[str, Any]:
    def compute(cache: RunCache) -> dict[str, Any]:
        return run(
            scale=scale_name(args),
            hosts=args.hosts,
            seeds=args.seeds,
            overrides=args.overrides,
            cache=cache,
        )

    if args.proof_cache is not None:
        return run_benchmark(
            "overhead_proof",
            args,
            cache,
            lambda _: run_proof(args.proof_cache, args.seeds),
            report,
        )
    return run_benchmark("overhead", args, cache, compute, report)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hosts", nargs="+", default=list(HOSTS), choices=HOSTS)
    parser.add_argument(
        "--proof-cache",
        type=Path,
        default=None,
        help="Run nothing: report the phases of the runs benchmarks/proof.py cached here.",
    )


def main() -> None:
    cli_main(__doc__, add_arguments, run_cli)


if __name__ == "__main__":
    main()
