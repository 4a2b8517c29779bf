"""Plots of a comparison: accuracy per round per client, and what the filters selected."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_accuracy(run_dirs: dict[str, list[str]], out: Path) -> None:
    """One panel per client: test accuracy per round, mean over seeds, one line per variant."""
    curves: dict[str, dict[str, list[list[float]]]] = defaultdict(lambda: defaultdict(list))
    for variant, dirs in run_dirs.items():
        for run_dir in dirs:
            records = _read_jsonl(Path(run_dir) / "metrics.jsonl")
            for cid in records[0]["clients"] if records else []:
                curves[cid][variant].append([r["clients"][cid]["accuracy"] for r in records])
    clients = sorted(curves)
    if not clients:
        return
    fig, axes = plt.subplots(1, len(clients), figsize=(4 * len(clients), 3.2), squeeze=False)
    for ax, cid in zip(axes[0], clients):
        for variant, runs in curves[cid].items():
            n = min(len(r) for r in runs)
            mean = [sum(r[i] for r in runs) / len(runs) for i in range(n)]
            ax.plot(range(n), mean, marker="o", label=variant)
        ax.set_title(f"client {cid}")
        ax.set_xlabel("round")
        ax.set_ylabel("SLM test accuracy")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_selections(run_dirs: dict[str, list[str]], out: Path) -> None:
    """Items selected by each filter, by domain and by difficulty, summed over rounds/seeds."""
    by_domain: dict[str, Counter] = defaultdict(Counter)
    by_level: dict[str, Counter] = defaultdict(Counter)
    for variant, dirs in run_dirs.items():
        for run_dir in dirs:
            for rec in _read_jsonl(Path(run_dir) / "selections.jsonl"):
                key = f"{variant}: {rec['filter']}"
                by_domain[key].update(rec["domains"])
                by_level[key].update(str(d) for d in rec["difficulties"])
    if not by_domain:
        return
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.5 * len(by_domain) + 2.5))
    for ax, counts, title in ((axes[0], by_domain, "domain"), (axes[1], by_level, "difficulty")):
        keys = sorted(counts)
        labels = sorted({label for c in counts.values() for label in c})
        left = [0.0] * len(keys)
        for label in labels:
            widths = [counts[k][label] for k in keys]
            ax.barh(keys, widths, left=left, label=label)
            left = [a + b for a, b in zip(left, widths)]
        ax.set_title(f"selected items by {title}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------- benchmark figures
def plot_efficacy(
    rows: dict[str, dict[str, tuple[float, float]]],
    out: Path,
    nll: dict[str, dict[str, tuple[float, float]]] | None = None,
) -> None:
    """Grouped bars per host, one bar per variant (± sd over seeds): mean SLM accuracy, and,
    when given, the SLMs' per-token NLL of the gold path on their own test items."""
    hosts = list(rows)
    variants = sorted({v for r in rows.values() for v in r}, key=lambda v: (v != "host", v))
    if not hosts:
        return
    panels = [(rows, 100.0, "mean SLM test accuracy (%)")]
    if nll is not None:
        panels.append((nll, 1.0, "SLM test NLL per token (lower is better)"))
    width = 0.8 / max(1, len(variants))
    fig, axes = plt.subplots(
        1, len(panels), figsize=(len(panels) * (1.8 * len(hosts) + 2), 3.4), squeeze=False
    )
    for ax, (values, scale, label) in zip(axes[0], panels):
        for j, variant in enumerate(variants):
            xs = [i + j * width for i in range(len(hosts))]
            pairs = [values[h].get(variant, (0.0, 0.0)) for h in hosts]
            ax.bar(
                xs,
                [scale * p[0] for p in pairs],
                width,
                yerr=[scale * p[1] for p in pairs],
                capsize=3,
                label=variant,
            )
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(hosts))], hosts)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_selection_histograms(
    histograms: dict[str, list[dict[str, dict[str, dict]]]],
    capacity: dict[str, dict[str, float]],
    out: Path,
) -> None:
    """Per client: selected items by domain, per variant and round (summed over seeds), next to
    the domain's learnability (NLL drop per 1k tokens of a fresh SLM trained on it)."""
    clients = sorted({c for runs in histograms.values() for h in runs for c in h})
    domains = sorted(capacity)
    if not clients or not domains:
        return
    fig, axes = plt.subplots(
        1, len(clients) + 1, figsize=(3.6 * (len(clients) + 1), 3.4), squeeze=False
    )
    for ax, client in zip(axes[0], clients):
        keys: list[str] = []
        counts: dict[str, Counter] = {}
        for variant, runs in histograms.items():
            rounds = sorted({r for h in runs for r in h.get(client, {})}, key=int)
            for round_idx in rounds:
                key = f"{variant} r{round_idx}"
                keys.append(key)
                counts[key] = Counter()
                for h in runs:
                    counts[key].update(h.get(client, {}).get(round_idx, {}).get("domains", {}))
        left = [0.0] * len(keys)
        for domain in domains:
            widths = [counts[k][domain] for k in keys]
            ax.barh(keys, widths, left=left, label=domain)
            left = [a + b for a, b in zip(left, widths)]
        ax.set_title(f"client {client}: selected items")
        ax.invert_yaxis()
    axes[0][0].legend(fontsize=7)
    ax = axes[0][-1]
    ax.barh(domains, [capacity[d]["nll_drop_per_ktok"] for d in domains], color="grey")
    ax.set_title("learnability (NLL drop / ktok)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_phase_seconds(phases: dict[str, dict[str, float]], out: Path) -> None:
    """Stacked horizontal bars: seconds per round by phase, one bar per run."""
    keys = list(phases)
    names = sorted({p for v in phases.values() for p in v})
    if not keys:
        return
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(keys) + 1.5))
    left = [0.0] * len(keys)
    for name in names:
        widths = [phases[k].get(name, 0.0) for k in keys]
        ax.barh(keys, widths, left=left, label=name)
        left = [a + b for a, b in zip(left, widths)]
    ax.set_xlabel("seconds per round (summed over parties)")
    ax.invert_yaxis()
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_scale(runtimes: dict[str, dict], out: Path) -> None:
    """Round time and peak memory against the number of clients, one line per runtime."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for runtime, result in runtimes.items():
        rows = [r for r in result["rows"] if r.get("ok")]
        xs = [r["clients"] for r in rows]
        axes[0].plot(xs, [r["round_seconds"] for r in rows], marker="o", label=runtime)
        axes[1].plot(xs, [r["peak_rss_total_mb"] for r in rows], marker="o", label=runtime)
    axes[0].set_ylabel("seconds per round")
    axes[1].set_ylabel("peak RSS, all processes (MB)")
    for ax in axes:
        ax.set_xlabel("clients")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
