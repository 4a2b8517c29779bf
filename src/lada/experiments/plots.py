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
