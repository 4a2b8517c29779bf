"""Filter quality: what each client's filter selects, against what that SLM can learn.

1. Capacity map: for every domain of the suite (domains of known difficulty: the default suite
   mixes easy levels, chain_sum 2 / leg_counting 1 / gcd 1, with hard ones, products 2 / lcm 2 /
   basic_arithmetic 3), a fresh SLM of the client's preset trains on that domain alone; its
   per-token test NLL drop per trained token and its test accuracy say how learnable the domain
   is for that SLM.
2. Selections: per client and round, the domain and difficulty histograms of the items its
   filter (llm->slm_k) chose, for host + LaDa and for random selection of the same size, both
   at the equal token budget; and the rank correlation between the share of each domain in the
   selection and the domain's learnability.
3. Gain per trained token against random: (final SLM accuracy - accuracy of the same run without
   public data) / public tokens, and the same with the per-token test NLL decrease. Goal: LaDa's
   gain per token >= 1.5x random's.

    python benchmarks/filter_quality.py --quick
"""

from __future__ import annotations

import argparse
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from common import (
    HOSTS,
    ROOT,
    RunCache,
    RunRecord,
    base_parser,
    budget_overrides,
    equal_budget,
    host_config,
    print_table,
    run_benchmark,
    scale_name,
)
from rich.console import Console

from lada.experiments.config import ExperimentConfig
from lada.models.presets import load_model
from lada.models.training import evaluate, sft
from lada.tasks.gym_suite import SUITES, load_suite
from lada.tasks.prompts import gold_path, render_prompt

GOAL_RATIO = 1.5
#: Items per domain (train, test) and epochs of the capacity probe, per scale.
PROBE = {"quick": (16, 8, 2), "full": (60, 20, 3)}
#: Seed of the probe's items: a stream the experiment's splits do not draw from.
PROBE_SEED = 20_000
PLOT = ROOT / "docs" / "results" / "filter_selections.png"
#: Counters of `lada.method.pairs` per selection: what served as the positive path.
PAIR_KINDS = (
    "n_pairs",
    "sender_correct",
    "receiver_swapped",
    "gold_fallback",
    "skipped",
    "ungated",
)


def mean_nll(model: Any, items: list, batch_size: int) -> float:
    values = -model.sequence_logprobs(
        [render_prompt(it) for it in items],
        [gold_path(it) for it in items],
        batch_size=batch_size,
        normalize=True,
    )
    return float(values.mean())


def capacity_map(config: ExperimentConfig, scale: str) -> dict[str, dict[str, float]]:
    """Per domain: NLL drop per 1k trained tokens and accuracy of a fresh SLM trained on it."""
    n_train, n_test, epochs = PROBE[scale]
    suite = config.data.suite or "default"
    n_domains = len(SUITES[suite].domains)
    items = load_suite(suite, n=2 * (n_train + n_test) * n_domains, seed=PROBE_SEED)
    by_domain: dict[str, list] = {}
    for item in items:
        by_domain.setdefault(item.domain, []).append(item)
    spec = config.slm_for(0)
    out: dict[str, dict[str, float]] = {}
    for domain, group in sorted(by_domain.items()):
        train, test = group[:n_train], group[n_train : n_train + n_test]
        model = load_model(
            spec.preset, device=config.device, seed=config.seed, learning_rate=spec.learning_rate
        )
        before = mean_nll(model, test, config.train.generation_batch_size)
        paths = [gold_path(it) for it in train]
        tokens = (sum(model.count_tokens(paths)) + len(paths)) * epochs
        sft(model, train, epochs=epochs, batch_size=config.train.batch_size, seed=config.seed)
        after = mean_nll(model, test, config.train.generation_batch_size)
        accuracy = evaluate(
            model,
            test,
            batch_size=config.train.generation_batch_size,
            max_new_tokens=config.train.max_new_tokens,
        ).accuracy
        out[domain] = {
            "difficulty": float(group[0].difficulty),
            "nll_before": before,
            "nll_after": after,
            "nll_drop_per_ktok": 1e3 * (before - after) / tokens,
            "accuracy": accuracy,
            "trained_tokens": float(tokens),
        }
    return out


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Rank correlation (average ranks for ties); None when either side is constant."""

    def ranks(values: list[float]) -> list[float]:
        order = sorted(range(len(values)), key=lambda i: values[i])
        out = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2
            i = j + 1
        return out

    if len(xs) < 2 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    rx, ry = ranks(xs), ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    num = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    den = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return num / den


def selection_histograms(record: RunRecord) -> dict[str, dict[str, Any]]:
    """Per client filter (llm->slm_k) and round: counts by domain and by difficulty."""
    out: dict[str, dict[str, Any]] = {}
    for sel in record.selections:
        if not sel["party"].startswith("client_"):
            continue
        client = sel["party"].removeprefix("client_")
        per_round = out.setdefault(client, {})
        per_round[str(sel["round"])] = {
            "n_selected": len(sel["item_ids"]),
            "n_offered": sel["n_offered"],
            "strategy": sel["strategy"],
            "domains": dict(Counter(sel["domains"])),
            "difficulties": {str(k): v for k, v in Counter(sel["difficulties"]).items()},
            "pairs": sel.get("pairs", {}),
        }
    return out


def alignment(
    histograms: dict[str, dict[str, Any]], capacity: dict[str, dict[str, float]]
) -> dict[str, dict[str, Any]]:
    """Per client and round: Spearman(selection share by domain, learnability by domain)."""
    domains = sorted(capacity)
    learnability = [capacity[d]["nll_drop_per_ktok"] for d in domains]
    out: dict[str, dict[str, Any]] = {}
    for client, rounds in histograms.items():
        out[client] = {}
        for round_idx, hist in rounds.items():
            total = max(1, hist["n_selected"])
            share = [hist["domains"].get(d, 0) / total for d in domains]
            out[client][round_idx] = spearman(share, learnability)
    return out


def mean_own_nll(record: RunRecord) -> float:
    values = [v for c in record.extras["test_nll"].values() for v in c.values()]
    return statistics.fmean(values) if values else float("nan")


def gain_per_token(record: RunRecord, reference: RunRecord) -> dict[str, float | None]:
    tokens = record.slm_public_tokens()
    if tokens <= 0:
        return {"accuracy_per_mtok": None, "nll_per_mtok": None, "public_tokens": tokens}
    return {
        "public_tokens": tokens,
        "accuracy_gain": record.final_slm() - reference.final_slm(),
        "nll_gain": mean_own_nll(reference) - mean_own_nll(record),
        "accuracy_per_mtok": 1e6 * (record.final_slm() - reference.final_slm()) / tokens,
        "nll_per_mtok": 1e6 * (mean_own_nll(reference) - mean_own_nll(record)) / tokens,
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0 or a != a or b != b:
        return None
    return a / b


def run(
    *,
    scale: str,
    host: str,
    seeds: list[int] | None,
    overrides: list[str],
    cache: RunCache,
    config: Path | None = None,
    plot: Path | None = PLOT,
) -> dict[str, Any]:
    base = host_config(host, scale, overrides, path=config)
    seeds = list(seeds or base.seeds)
    capacity = capacity_map(base, scale)
    per_seed = []
    for seed in seeds:
        match = equal_budget(cache, base, seed)
        extra = budget_overrides(base, match.epochs_factor)
        lada = match.lada_equal
        random = cache.run(base, "random", seed, extra)
        local_only = cache.run(base, "host", seed, {"budget.client_steps": 0})
        lada_gain, random_gain = (
            gain_per_token(lada, local_only),
            gain_per_token(random, local_only),
        )
        lada_hist, random_hist = selection_histograms(lada), selection_histograms(random)
        per_seed.append(
            {
                "seed": seed,
                "lada": {
                    "histograms": lada_hist,
                    "alignment": alignment(lada_hist, capacity),
                    "gain": lada_gain,
                    "run_dir": str(lada.run_dir),
                },
                "random": {
                    "histograms": random_hist,
                    "alignment": alignment(random_hist, capacity),
                    "gain": random_gain,
                    "run_dir": str(random.run_dir),
                },
                "local_only": {
                    "slm_mean": local_only.final_slm(),
                    "mean_test_nll": mean_own_nll(local_only),
                    "run_dir": str(local_only.run_dir),
                },
                "client_domains": lada.extras.get("client_domains", {}),
                "accuracy_ratio": _ratio(
                    lada_gain["accuracy_per_mtok"], random_gain["accuracy_per_mtok"]
                ),
                "nll_ratio": _ratio(lada_gain["nll_per_mtok"], random_gain["nll_per_mtok"]),
            }
        )
    if plot is not None:
        from lada.experiments.plots import plot_selection_histograms

        plot_selection_histograms(
            {
                "LaDa": [s["lada"]["histograms"] for s in per_seed],
                "random": [s["random"]["histograms"] for s in per_seed],
            },
            capacity,
            plot,
        )
    return {
        "scale": scale,
        "host": host,
        "seeds": seeds,
        "probe": dict(zip(("train_per_domain", "test_per_domain", "epochs"), PROBE[scale])),
        "capacity": capacity,
        "per_seed": per_seed,
        "plot": str(plot) if plot else None,
    }


def report(result: dict[str, Any], console: Console) -> None:
    cap = result["capacity"]
    print_table(
        console,
        "What the SLM can learn, per domain (fresh SLM trained on that domain alone)",
        ["domain", "difficulty", "NLL before", "NLL after", "NLL drop / ktok", "test acc. %"],
        [
            [
                d,
                f"{v['difficulty']:.0f}",
                f"{v['nll_before']:.3f}",
                f"{v['nll_after']:.3f}",
                f"{v['nll_drop_per_ktok']:.4f}",
                f"{100 * v['accuracy']:.0f}",
            ]
            for d, v in cap.items()
        ],
    )
    rows = []
    for seed in result["per_seed"]:
        for variant in ("lada", "random"):
            hists = seed[variant]["histograms"]
            for client, rounds in sorted(hists.items()):
                for round_idx, hist in sorted(rounds.items()):
                    rho = seed[variant]["alignment"][client][round_idx]
                    top = ", ".join(
                        f"{d} {n}" for d, n in sorted(hist["domains"].items(), key=lambda x: -x[1])
                    )
                    rows.append(
                        [
                            f"{variant} s{seed['seed']}",
                            client,
                            round_idx,
                            f"{hist['n_selected']}/{hist['n_offered']}",
                            top,
                            "n/a" if rho is None else f"{rho:+.2f}",
                        ]
                    )
    print_table(
        console,
        "Selections per client and round (domain counts; ρ = rank corr. with learnability)",
        ["variant", "client", "round", "selected", "domains", "ρ"],
        rows,
    )
    pair_rows = []
    for seed in result["per_seed"]:
        for variant in ("lada", "random"):
            totals: Counter = Counter()
            for rounds in seed[variant]["histograms"].values():
                for hist in rounds.values():
                    totals.update(hist.get("pairs", {}))
            pair_rows.append(
                [f"{variant} s{seed['seed']}", *(f"{totals[k]:.0f}" for k in PAIR_KINDS)]
            )
    print_table(
        console,
        "Pairs the correctness gate built on the selections (all clients and rounds)",
        ["variant", *PAIR_KINDS],
        pair_rows,
    )
    gains = []
    for seed in result["per_seed"]:
        for variant in ("lada", "random"):
            g = seed[variant]["gain"]
            gains.append(
                [
                    f"{variant} s{seed['seed']}",
                    f"{g['public_tokens'] / 1e3:.1f}",
                    _fmt(g.get("accuracy_per_mtok"), ".2f"),
                    _fmt(g.get("nll_per_mtok"), ".3f"),
                ]
            )
        gains.append(
            [
                f"ratio s{seed['seed']}",
                "",
                _fmt(seed["accuracy_ratio"], ".2f", "x"),
                _fmt(seed["nll_ratio"], ".2f", "x"),
            ]
        )
    print_table(
        console,
        f"Gain per public trained token vs the same run without public data (goal LaDa/random "
        f">= {GOAL_RATIO}x)",
        ["variant", "public ktok", "acc. gain / Mtok", "NLL drop / Mtok"],
        gains,
    )


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "n/a" if value is None or value != value else f"{value:{spec}}{suffix}"


def run_cli(args: argparse.Namespace, cache: RunCache | None = None) -> dict[str, Any]:
    def compute(cache: RunCache) -> dict[str, Any]:
        return run(
            scale=scale_name(args),
            host=args.host,
            seeds=args.seeds,
            overrides=args.overrides,
            cache=cache,
            config=args.config,
        )

    return run_benchmark("filter_quality", args, cache, compute, report)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="fedcot", choices=HOSTS)
    parser.add_argument("--config", type=Path, help="config file instead of configs/HOST.toml")


def main() -> None:
    parser = base_parser(__doc__)
    add_arguments(parser)
    torch.manual_seed(0)
    run_cli(parser.parse_args())


if __name__ == "__main__":
    main()
