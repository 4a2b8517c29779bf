"""Ablations of LaDa and its two sensitive fields, all at host + LaDa's equal token budget.

On one host (FedCoT by default), every variant gets the client steps that put host + LaDa on
the host's trained-token budget (`common.equal_budget`, measured per seed), so differences come
from what is selected and how it is learned, not from training longer:
  lada           host + LaDa
  random         the filter replaced by a uniform choice of the same number of items
  exploit_only   f1 alone (no exploration network f2)
  no_clustering  round 1 chooses at random instead of by K-means clusters
  sft_only       no contrastive term (lambda = 0)
  gate_off       the paper's preference by role (no correctness gate)
  alpha=X        reward mix alpha*sigmoid(r_item) + (1-alpha)*sigmoid(r_batch)
  lambda=X       weight of the contrastive loss

    python benchmarks/ablations.py --quick
    python benchmarks/ablations.py --host fedcot --alphas 0 0.25 0.75 1 --lambdas 0.25 0.5 2 4
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from common import (
    HOSTS,
    RunCache,
    budget_overrides,
    cli_main,
    equal_budget,
    host_config,
    mean_sd,
    pct,
    print_table,
    run_benchmark,
    scale_name,
)
from efficacy import aggregate, run_row
from rich.console import Console

ABLATIONS = ("random", "exploit_only", "no_clustering", "sft_only", "gate_off")
SWEEPS = {
    "quick": {"alpha": [1.0], "lambda": [3.0]},
    "full": {"alpha": [0.0, 0.25, 0.75, 1.0], "lambda": [0.25, 0.5, 2.0, 4.0]},
}


def run(
    *,
    scale: str,
    host: str,
    seeds: list[int] | None,
    overrides: list[str],
    cache: RunCache,
    alphas: list[float] | None = None,
    lambdas: list[float] | None = None,
    config: Path | None = None,
) -> dict[str, Any]:
    base = host_config(host, scale, overrides, path=config)
    seeds = list(seeds or base.seeds)
    alphas = SWEEPS[scale]["alpha"] if alphas is None else alphas
    lambdas = SWEEPS[scale]["lambda"] if lambdas is None else lambdas
    variants = [
        *ABLATIONS,
        *(f"alpha={a:g}" for a in alphas),
        *(f"lambda={v:g}" for v in lambdas),
    ]
    rows: dict[str, list[dict[str, Any]]] = {"lada": [], **{v: [] for v in variants}}
    factors = []
    for seed in seeds:
        match = equal_budget(cache, base, seed)
        factors.append(match.epochs_factor)
        rows["lada"].append(run_row(match.lada_equal))
        extra = budget_overrides(base, match.epochs_factor)
        for variant in variants:
            rows[variant].append(run_row(cache.run(base, variant, seed, extra)))
    table = {v: aggregate(r) for v, r in rows.items()}
    lada_slm = table["lada"]["slm_mean"][0]
    lada_tokens = table["lada"]["slm_public_tokens"][0]
    for row in table.values():
        row["delta_slm_points_vs_lada"] = 100 * (row["slm_mean"][0] - lada_slm)
        row["token_ratio_to_lada"] = (
            row["slm_public_tokens"][0] / lada_tokens if lada_tokens else None
        )
        row["mean_test_nll"] = mean_sd(
            [
                sum(v for c in r["test_nll"].values() for v in c.values())
                / max(1, sum(len(c) for c in r["test_nll"].values()))
                for r in row["runs"]
            ]
        )
    return {
        "scale": scale,
        "host": host,
        "seeds": seeds,
        "epochs_factor": factors,
        "alphas": alphas,
        "lambdas": lambdas,
        "variants": table,
    }


def report(result: dict[str, Any], console: Console) -> None:
    rows = []
    for variant, row in result["variants"].items():
        ratio = row["token_ratio_to_lada"]
        nll = row["mean_test_nll"]
        rows.append(
            [
                variant,
                pct(row["slm_mean"]),
                f"{row['delta_slm_points_vs_lada']:+.1f}",
                pct(row["llm"]),
                f"{nll[0]:.3f} ± {nll[1]:.3f}",
                f"{ratio:.2f}" if ratio is not None else "n/a",
            ]
        )
    print_table(
        console,
        f"Ablations on {result['host']} ({result['scale']} scale, equal token budget, "
        f"epochs x{result['epochs_factor']}; mean ± sd over seeds)",
        ["variant", "SLM acc. %", "Δ vs lada pt", "LLM acc. %", "test NLL/token", "tok/lada"],
        rows,
    )


def run_cli(args: argparse.Namespace, cache: RunCache | None = None) -> dict[str, Any]:
    def compute(cache: RunCache) -> dict[str, Any]:
        return run(
            scale=scale_name(args),
            host=args.host,
            seeds=args.seeds,
            overrides=args.overrides,
            cache=cache,
            alphas=args.alphas,
            lambdas=args.lambdas,
            config=args.config,
        )

    return run_benchmark("ablations", args, cache, compute, report)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="fedcot", choices=HOSTS)
    parser.add_argument("--config", type=Path, help="config file instead of configs/HOST.toml")
    parser.add_argument("--alphas", type=float, nargs="*", help="alpha sweep points")
    parser.add_argument("--lambdas", type=float, nargs="*", help="lambda sweep points")


def main() -> None:
    cli_main(__doc__, add_arguments, run_cli)


if __name__ == "__main__":
    main()
