"""`lada compare CONFIG`: the host alone, host + LaDa and the ablations, over several seeds.

Variants (each a set of config overrides on the same base config):
  host            the host framework alone (LaDa off)
  lada            host + LaDa
  random          LaDa with random selection at the same item count (no filter)
  exploit_only    LaDa without the exploration network f2
  sft_only        LaDa without the contrastive term (lambda = 0)
  no_clustering   LaDa without the round-1 K-means bootstrap (random choice at the budget)
  gate_off        LaDa with the paper's preference by role (no correctness gate)
Asked for by name only (not in the default set, since only some hosts have the option):
  host_gate       the host alone with its correctness gate (wrong sender paths -> gold paths),
                  which isolates what LaDa's gate adds (hosts with `host.correctness_gate`)
Sweeps are named by their value: `alpha=0.25` (reward mix) and `lambda=2` (contrastive weight)
are LaDa with that one field changed; they are accepted wherever a variant name is.
Every variant runs the config's `budget` (optimizer steps per party per round); the table shows
the steps and tokens each one spent beside its accuracy.
Writes `compare.md` (mean and spread per variant), `compare.json`, and plots into one folder.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from lada.experiments.config import ExperimentConfig
from lada.experiments.runner import RunResult

VARIANTS: dict[str, dict[str, Any]] = {
    "host": {"lada_enabled": False},
    "lada": {"lada_enabled": True},
    "random": {"lada_enabled": True, "lada.selection_mode": "random"},
    "exploit_only": {"lada_enabled": True, "lada.selection_mode": "exploit_only"},
    "sft_only": {"lada_enabled": True, "lada.cd_weight": 0.0},
    "no_clustering": {"lada_enabled": True, "lada.cluster_bootstrap": False},
    "gate_off": {"lada_enabled": True, "lada.correctness_gate": False},
}

#: Variants run only when named (they need an option not every host has).
EXTRA_VARIANTS: dict[str, dict[str, Any]] = {
    "host_gate": {"lada_enabled": False, "host.correctness_gate": True},
}

#: Swept LaDa fields by the name a sweep variant uses (`alpha=0.25`, `lambda=2`).
SWEEPS: dict[str, str] = {"alpha": "lada.alpha", "lambda": "lada.cd_weight"}


def variant_overrides(variant: str) -> dict[str, Any]:
    """The config overrides of a named variant or of a sweep point such as `alpha=0.25`."""
    if variant in VARIANTS:
        return VARIANTS[variant]
    if variant in EXTRA_VARIANTS:
        return EXTRA_VARIANTS[variant]
    name, sep, value = variant.partition("=")
    if sep and name in SWEEPS:
        try:
            return {"lada_enabled": True, SWEEPS[name]: float(value)}
        except ValueError:
            pass
    raise ValueError(
        f"variant {variant!r}: unknown; known: {[*VARIANTS, *EXTRA_VARIANTS]} or a sweep point "
        f"{', '.join(f'{k}=VALUE' for k in SWEEPS)}"
    )


def is_variant(variant: str) -> bool:
    try:
        variant_overrides(variant)
    except ValueError:
        return False
    return True


def variant_config(
    base: ExperimentConfig,
    variant: str,
    seed: int,
    out: Path,
    extra: dict[str, Any] | None = None,
) -> ExperimentConfig:
    """`base` turned into one variant at one seed; `extra` overrides are applied last (dotted
    keys, e.g. {"budget.client_steps": 16} for twice the default quickstart budget)."""
    data = base.model_dump(mode="json")
    data.update(seed=seed, output_dir=str(out / variant), name=variant)
    overrides = {**variant_overrides(variant), **(extra or {})}
    if "host.correctness_gate" in overrides and "correctness_gate" not in data["host"]:
        raise ValueError(
            f"variant {variant!r}: host.name={base.host.name!r} has no correctness_gate option"
        )
    for key, value in overrides.items():
        node = data
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    return ExperimentConfig.model_validate(data)


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(results: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Mean and sample standard deviation over seeds of each variant's final accuracies."""
    table = {}
    for variant, summaries in results.items():
        slm = [s["final"]["mean_slm_accuracy"] for s in summaries]
        llm = [
            s["final"]["llm_accuracy"] for s in summaries if s["final"]["llm_accuracy"] is not None
        ]
        start = [s["start"]["mean_slm_accuracy"] for s in summaries]
        table[variant] = {
            "seeds": [s["seed"] for s in summaries],
            "slm_mean": _mean_sd(slm),
            "llm": _mean_sd(llm),
            "slm_start": _mean_sd(start),
            "bytes": _mean_sd([s["total_bytes"] for s in summaries]),
            **_budget_columns(summaries),
            "seconds": _mean_sd([s["wall_seconds"] for s in summaries]),
            "per_seed_slm": slm,
        }
    return table


def _budget_columns(summaries: Sequence[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """Mean and spread over seeds of the steps and tokens each side spent in the whole run.

    "slm" sums every SLM-side party (the clients, and FedCoLLM's aggregated SLM on the
    server), "llm" the server's LLM; a summary written before budgets were logged gives NaN.
    """
    out = {}
    for side in ("slm", "llm"):
        for unit in ("steps", "tokens"):
            values = [s["budget"][side][unit] for s in summaries if "budget" in s]
            out[f"{side}_{unit}"] = _mean_sd(values)
    return out


def markdown_table(table: dict[str, dict[str, Any]], host: str) -> str:
    def pct(pair: tuple[float, float]) -> str:
        return f"{100 * pair[0]:.1f} ± {100 * pair[1]:.1f}"

    def count(pair: tuple[float, float]) -> str:
        return "n/a" if pair[0] != pair[0] else f"{pair[0]:,.0f}"

    lines = [
        f"| {host} variant | mean SLM acc. (%) | LLM acc. (%) | SLM acc. at round 0 (%) "
        "| SLM steps | SLM tokens | LLM steps | LLM tokens | MB sent | wall s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for variant, row in table.items():
        lines.append(
            f"| {variant} | {pct(row['slm_mean'])} | {pct(row['llm'])} | {pct(row['slm_start'])} "
            f"| {count(row['slm_steps'])} | {count(row['slm_tokens'])} "
            f"| {count(row['llm_steps'])} | {count(row['llm_tokens'])} "
            f"| {row['bytes'][0] / 1e6:.2f} | {row['seconds'][0]:.0f} |"
        )
    return "\n".join(lines) + "\n"


#: Runs one config and returns its result (`lada.apps.run.run_experiment` picks the runtime).
RunFn = Callable[..., RunResult]


def compare(
    base: ExperimentConfig,
    *,
    run: RunFn,
    variants: Sequence[str] = tuple(VARIANTS),
    seeds: Sequence[int] | None = None,
    out: Path | None = None,
    console: Console | None = None,
) -> Path:
    console = console or Console(stderr=True)
    unknown = [v for v in variants if not is_variant(v)]
    if unknown:
        raise ValueError(f"variants: unknown {unknown}; known: {list(VARIANTS)}, alpha=X, lambda=X")
    seeds = list(seeds if seeds is not None else base.seeds)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = out or Path(base.output_dir) / f"compare-{base.name}-{base.host.name}-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    run_dirs: dict[str, list[str]] = {v: [] for v in variants}
    for seed in seeds:
        for variant in variants:
            console.print(f"[bold]compare[/] {variant} seed {seed}")
            result = run(variant_config(base, variant, seed, out), console=console)
            results[variant].append(result.summary)
            run_dirs[variant].append(str(result.run_dir))
    table = summarize(results)
    (out / "compare.json").write_text(
        json.dumps({"table": table, "runs": run_dirs, "host": base.host.name}, indent=2)
    )
    (out / "compare.md").write_text(markdown_table(table, base.host.name))
    from lada.experiments.plots import plot_accuracy, plot_selections

    plot_accuracy(run_dirs, out / "accuracy.png")
    plot_selections(run_dirs, out / "selections.png")
    console.print((out / "compare.md").read_text())
    return out
