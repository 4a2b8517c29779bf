"""Efficacy: every host alone against host + LaDa, at an equal trained-token budget.

For each host (fedcot, fedcollm, fedmkt, crosslm) and seed, three runs on the same split:
`host` (the framework alone), `lada` (host + LaDa with the host's optimizer steps,
`budget.client_steps`) and `lada_equal` (host + LaDa with its steps multiplied so that the SLMs
train on as many public tokens as the host's SLMs did; see `common.equal_budget`). Reports mean
and spread over seeds of the mean and per-client SLM accuracy and of the LLM accuracy, the
tokens each trained on, and the goal check (host + LaDa >= +8 points mean SLM accuracy over the
host, LLM not worse).

    python benchmarks/efficacy.py --quick                 # minutes, smoke scale
    python benchmarks/efficacy.py                         # quickstart scale, 3 seeds (hours)
    python benchmarks/efficacy.py --hosts fedcot --config configs/quickstart.toml --seeds 0 1 2
"""

from __future__ import annotations

import argparse
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
    mean_sd,
    pct,
    print_table,
    run_benchmark,
    scale_name,
)
from rich.console import Console

GOAL_SLM_POINTS = 8.0
PLOT = ROOT / "docs" / "results" / "efficacy.png"
VARIANT_LABELS = {"host": "host alone", "lada": "+ LaDa", "lada_equal": "+ LaDa, equal tokens"}


def run_row(record: RunRecord) -> dict[str, Any]:
    return {
        "seed": record.seed,
        "slm_mean": record.final_slm(),
        "slm_per_client": record.client_accuracy(),
        "slm_start": record.summary["start"]["mean_slm_accuracy"],
        "llm": record.final_llm(),
        "llm_start": record.summary["start"]["llm_accuracy"],
        "slm_tokens": record.slm_tokens(),
        "slm_public_tokens": record.slm_public_tokens(),
        "llm_tokens": record.llm_tokens(),
        "total_bytes": record.summary["total_bytes"],
        "wall_seconds": record.summary["wall_seconds"],
        "test_nll": record.extras.get("test_nll", {}),
        "run_dir": str(record.run_dir),
    }


def mean_test_nll(row: dict[str, Any]) -> float:
    """Per-token NLL of the gold path on the clients' own test items, averaged over domains."""
    values = [v for client in row["test_nll"].values() for v in client.values()]
    return sum(values) / len(values) if values else float("nan")


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample sd over seeds; per client as well."""
    clients = sorted({c for r in rows for c in r["slm_per_client"]})
    return {
        "test_nll": mean_sd([mean_test_nll(r) for r in rows]),
        "slm_mean": mean_sd([r["slm_mean"] for r in rows]),
        "slm_per_client": {c: mean_sd([r["slm_per_client"][c] for r in rows]) for c in clients},
        "llm": mean_sd([r["llm"] for r in rows]),
        "slm_public_tokens": mean_sd([r["slm_public_tokens"] for r in rows]),
        "llm_tokens": mean_sd([r["llm_tokens"] for r in rows]),
        "total_bytes": mean_sd([r["total_bytes"] for r in rows]),
        "wall_seconds": mean_sd([r["wall_seconds"] for r in rows]),
        "runs": rows,
    }


def evaluate_host(
    host: str,
    scale: str,
    seeds: list[int] | None,
    overrides: list[str],
    cache: RunCache,
    config: Path | None = None,
) -> dict[str, Any]:
    base = host_config(host, scale, overrides, path=config)
    seeds = list(seeds or base.seeds)
    matches = [equal_budget(cache, base, seed) for seed in seeds]
    variants = {
        "host": aggregate([run_row(m.host) for m in matches]),
        "lada": aggregate([run_row(m.lada) for m in matches]),
        "lada_equal": aggregate([run_row(m.lada_equal) for m in matches]),
    }
    host_tokens = variants["host"]["slm_public_tokens"][0]
    for row in variants.values():
        row["token_ratio_to_host"] = (
            row["slm_public_tokens"][0] / host_tokens if host_tokens else None
        )
    delta_slm = 100 * (variants["lada_equal"]["slm_mean"][0] - variants["host"]["slm_mean"][0])
    llm_host, llm_lada = variants["host"]["llm"][0], variants["lada_equal"]["llm"][0]
    delta_llm = (
        100 * (llm_lada - llm_host) if llm_host == llm_host and llm_lada == llm_lada else None
    )
    return {
        "host": host,
        "config": str(config or f"configs/{host}.toml"),
        "seeds": seeds,
        "epochs_factor": [m.epochs_factor for m in matches],
        "variants": variants,
        "delta_slm_points": delta_slm,
        "delta_llm_points": delta_llm,
        "delta_test_nll": variants["lada_equal"]["test_nll"][0] - variants["host"]["test_nll"][0],
        "goal_slm_met": delta_slm >= GOAL_SLM_POINTS,
        "goal_llm_met": delta_llm is None or delta_llm >= 0,
    }


def run(
    *,
    scale: str,
    hosts: list[str],
    seeds: list[int] | None,
    overrides: list[str],
    cache: RunCache,
    config: Path | None = None,
    plot: Path | None = PLOT,
) -> dict[str, Any]:
    per_host = {h: evaluate_host(h, scale, seeds, overrides, cache, config) for h in hosts}
    if plot is not None:
        from lada.experiments.plots import plot_efficacy

        plot_efficacy(
            {
                h: {v: r["variants"][v]["slm_mean"] for v in r["variants"]}
                for h, r in per_host.items()
            },
            plot,
            nll={
                h: {v: r["variants"][v]["test_nll"] for v in r["variants"]}
                for h, r in per_host.items()
            },
        )
    return {
        "scale": scale,
        "plot": str(plot) if plot else None,
        "budget_rule": (
            "lada_equal gives LaDa budget.client_steps x round(host public SLM tokens / LaDa "
            "public SLM tokens), measured per seed; private SFT tokens excluded (identical in "
            "every variant)"
        ),
        "hosts": per_host,
    }


def report(result: dict[str, Any], console: Console) -> None:
    rows = []
    for host, res in result["hosts"].items():
        for variant, row in res["variants"].items():
            ratio = row["token_ratio_to_host"]
            rows.append(
                [
                    host,
                    VARIANT_LABELS[variant],
                    pct(row["slm_mean"]),
                    pct(row["llm"]),
                    f"{row['test_nll'][0]:.3f} ± {row['test_nll'][1]:.3f}",
                    f"{row['slm_public_tokens'][0] / 1e3:.1f}",
                    f"{ratio:.2f}" if ratio is not None else "n/a",
                    f"{row['total_bytes'][0] / 1e6:.2f}",
                    f"{row['wall_seconds'][0]:.0f}",
                ]
            )
        rows.append(
            [
                host,
                "Δ equal tokens − host",
                f"{res['delta_slm_points']:+.1f} pt",
                f"{res['delta_llm_points']:+.1f} pt"
                if res["delta_llm_points"] is not None
                else "n/a",
                f"{res['delta_test_nll']:+.3f}",
                "",
                "",
                "",
                "goal met" if res["goal_slm_met"] and res["goal_llm_met"] else "goal not met",
            ]
        )
    print_table(
        console,
        f"Efficacy ({result['scale']} scale; mean ± sd over seeds, accuracy in %)",
        [
            "host",
            "variant",
            "SLM acc. %",
            "LLM acc. %",
            "SLM test NLL/token",
            "public SLM ktok",
            "tok/host",
            "MB",
            "s",
        ],
        rows,
    )
    clients = sorted(
        {
            c
            for res in result["hosts"].values()
            for v in res["variants"].values()
            for c in v["slm_per_client"]
        },
        key=int,
    )
    print_table(
        console,
        "Per-client SLM test accuracy (%, mean ± sd over seeds)",
        ["host", "variant", *(f"client {c}" for c in clients)],
        [
            [
                host,
                VARIANT_LABELS[variant],
                *(
                    pct(row["slm_per_client"][c]) if c in row["slm_per_client"] else ""
                    for c in clients
                ),
            ]
            for host, res in result["hosts"].items()
            for variant, row in res["variants"].items()
        ],
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hosts", nargs="+", default=list(HOSTS), choices=HOSTS)
    parser.add_argument("--config", type=Path, help="config file instead of configs/HOST.toml")
    parser.add_argument("--plot", type=Path, default=PLOT, help="bar chart PNG path")


def main() -> None:
    cli_main(__doc__, add_arguments, run_cli)


def run_cli(args: argparse.Namespace, cache: RunCache | None = None) -> dict[str, Any]:
    def compute(cache: RunCache) -> dict[str, Any]:
        return run(
            scale=scale_name(args),
            hosts=args.hosts,
            seeds=args.seeds,
            overrides=args.overrides,
            cache=cache,
            config=getattr(args, "config", None),
            plot=args.plot,
        )

    return run_benchmark("efficacy", args, cache, compute, report)


if __name__ == "__main__":
    main()
