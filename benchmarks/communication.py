"""Communication: bytes per round per message kind, for every host with and without LaDa.

Reads the efficacy runs (free after `efficacy.py` in one session). Every payload is measured as
it crosses the wire codec (`Traffic`: bytes per exchange/direction/payload kind), so the counts
are the same for the in-process and the Flower runtime. Reports MB per run, per round, and per
message kind, and LaDa's added bytes per run against what the FedMKT host alone sends per run
(the paper: LaDa sends 3.87-6.71 MB per run, more than FedMKT; goal here: LaDa adds no more
than the FedMKT host sends).

    python benchmarks/communication.py --quick
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from typing import Any

from common import (
    HOSTS,
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


def bytes_by_kind(runs: list[RunRecord]) -> dict[str, dict[str, float]]:
    """Per message key (exchange/direction/kind): mean bytes in setup (round 0) and per round."""
    setup: dict[str, list[float]] = defaultdict(list)
    per_round: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        rounds = run.federated_rounds()
        keys = {k for r in run.rounds for k in r["traffic"]["bytes"]}
        for key in keys:
            setup[key].append(run.rounds[0]["traffic"]["bytes"].get(key, 0))
            per_round[key].append(
                statistics.fmean(r["traffic"]["bytes"].get(key, 0) for r in rounds)
                if rounds
                else 0.0
            )
    return {
        k: {"setup": statistics.fmean(setup[k]), "per_round": statistics.fmean(per_round[k])}
        for k in sorted(per_round)
    }


def run(
    *,
    scale: str,
    hosts: list[str],
    seeds: list[int] | None,
    overrides: list[str],
    cache: RunCache,
) -> dict[str, Any]:
    result: dict[str, Any] = {"scale": scale, "hosts": {}}
    for host in hosts:
        base = host_config(host, scale, overrides)
        runs: dict[str, list[RunRecord]] = {"host": [], "lada": [], "lada_equal": []}
        for seed in seeds or base.seeds:
            match = equal_budget(cache, base, seed)
            runs["host"].append(match.host)
            runs["lada"].append(match.lada)
            runs["lada_equal"].append(match.lada_equal)
        result["hosts"][host] = {
            variant: {
                "mb_per_run": statistics.fmean(r.summary["total_bytes"] for r in rs) / 1e6,
                "mb_per_round": statistics.fmean(
                    statistics.fmean(x["traffic"]["total_bytes"] for x in r.federated_rounds())
                    for r in rs
                )
                / 1e6,
                "rounds": rs[0].summary["rounds"],
                "by_kind": bytes_by_kind(rs),
            }
            for variant, rs in runs.items()
        }
    fedmkt = result["hosts"].get("fedmkt", {}).get("host", {}).get("mb_per_run")
    result["fedmkt_host_mb_per_run"] = fedmkt
    for variants in result["hosts"].values():
        added = variants["lada"]["mb_per_run"] - variants["host"]["mb_per_run"]
        variants["lada_added_mb_per_run"] = added
        variants["goal_met"] = None if fedmkt is None else added <= fedmkt
    return result


def report(result: dict[str, Any], console: Console) -> None:
    rows = []
    for host, variants in result["hosts"].items():
        for variant in ("host", "lada", "lada_equal"):
            row = variants[variant]
            rows.append(
                [
                    f"{host} {variant}",
                    f"{row['mb_per_run']:.3f}",
                    f"{row['mb_per_round']:.3f}",
                    f"{variants['lada_added_mb_per_run']:+.3f}" if variant == "lada" else "",
                ]
            )
    fedmkt = result["fedmkt_host_mb_per_run"]
    print_table(
        console,
        f"MB sent per run ({result['scale']} scale; FedMKT host alone sends "
        f"{'n/a' if fedmkt is None else f'{fedmkt:.3f}'} MB per run)",
        ["run", "MB per run", "MB per round", "added by LaDa"],
        rows,
    )
    kinds = []
    for host, variants in result["hosts"].items():
        for variant in ("host", "lada"):
            for key, row in variants[variant]["by_kind"].items():
                kinds.append(
                    [
                        f"{host} {variant}",
                        key,
                        f"{row['setup'] / 1e3:.1f}",
                        f"{row['per_round'] / 1e3:.1f}",
                    ]
                )
    print_table(
        console,
        "kB per message kind",
        ["run", "exchange/direction/kind", "setup kB", "per round kB"],
        kinds,
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

    return run_benchmark("communication", args, cache, compute, report)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hosts", nargs="+", default=list(HOSTS), choices=HOSTS)


def main() -> None:
    cli_main(__doc__, add_arguments, run_cli)


if __name__ == "__main__":
    main()
