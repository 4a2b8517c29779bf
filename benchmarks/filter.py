"""How much the learnability filter costs next to the training it steers.

Times, per 1,000 candidates, the filter's work in one round (fitting the feature space, building
features, scoring with f1 + w*f2, and one `update` of f1 and f2 over 1,000 remembered rewards)
for receiver hidden sizes from tiny SLMs to small hub models, and compares it with one epoch of
supervised fine-tuning of the `tiny-1m` SLM on the same number of items.

    python benchmarks/filter.py                       # table + benchmarks/results/filter.json
    python benchmarks/filter.py --n 500 --widths 128 --out /tmp/filter.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from lada.method.config import LadaConfig
from lada.method.filter import LearnabilityFilter
from lada.tasks.item import ReasoningItem

DEFAULT_OUT = Path(__file__).parent / "results" / "filter.json"


def timed(
    action: Callable[[Any], Any], repeats: int, setup: Callable[[], Any] = lambda: None
) -> float:
    """Best-of-`repeats` wall time in seconds of `action(setup())`, setup not timed."""
    best = float("inf")
    for _ in range(repeats):
        state = setup()
        start = time.perf_counter()
        action(state)
        best = min(best, time.perf_counter() - start)
    return best


def clustered_embeddings(n: int, width: int, seed: int) -> np.ndarray:
    """Embeddings with the structure K-means sees in practice: domains plus outlier dimensions."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=2.0, size=(6, width))
    points = centers[rng.integers(0, 6, size=n)] + rng.normal(size=(n, width))
    points[:, :3] *= 50.0  # a few huge dimensions, as in real hidden states
    return points


def filter_costs(
    n: int, width: int, config: LadaConfig, repeats: int, device: str
) -> dict[str, float]:
    embeddings = clustered_embeddings(n, width, config.seed)
    rewards = np.random.default_rng(config.seed).uniform(0.4, 0.8, size=n)
    out: dict[str, float] = {"feature_dim": float(2 * width)}
    out["fit_space_s"] = timed(
        lambda _: LearnabilityFilter(config, device=device).featurize(embeddings), repeats
    )

    filt = LearnabilityFilter(config, device=device)
    features = filt.featurize(embeddings)
    out["featurize_s"] = timed(lambda _: filt.featurize(embeddings), repeats)
    filt.update(features, rewards)  # later rounds score with trained networks
    out["score_s"] = timed(lambda _: filt.score(features), repeats)

    def fresh_filter() -> LearnabilityFilter:
        fresh = LearnabilityFilter(config, device=device)
        fresh.featurize(embeddings)
        return fresh

    out["update_s"] = timed(lambda fresh: fresh.update(features, rewards), repeats, fresh_filter)
    out["round_s"] = out["featurize_s"] + out["score_s"] + out["update_s"]
    return {k: v * (1000.0 / n) if k.endswith("_s") else v for k, v in out.items()}


def synthetic_items(n: int, seed: int) -> list[ReasoningItem]:
    """Two-step arithmetic items of realistic path length for the SLM reference epoch."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        a, b, c = (int(v) for v in rng.integers(10, 99, size=3))
        items.append(
            ReasoningItem(
                id=f"bench-{i}",
                domain="arith",
                question=f"What is {a} + {b} - {c}?",
                answer=str(a + b - c),
                answer_kind="numeric",
                rationale=f"{a} + {b} = {a + b}\n{a + b} - {c} = {a + b - c}",
            )
        )
    return items


def slm_epoch_seconds(n: int, preset: str, batch_size: int, seed: int, device: str) -> float:
    """Wall time of one SFT epoch of `preset` on n items, scaled to 1,000 items."""
    from lada.models.presets import load_model
    from lada.models.training import sft

    model = load_model(preset, seed=seed, device=device)
    items = synthetic_items(n, seed)
    start = time.perf_counter()
    sft(model, items, epochs=1, batch_size=batch_size, seed=seed, progress=False)
    return (time.perf_counter() - start) * (1000.0 / n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="candidates (and SFT items)")
    parser.add_argument(
        "--widths", type=int, nargs="+", default=[128, 320, 576], help="receiver hidden sizes"
    )
    parser.add_argument("--repeats", type=int, default=2, help="best-of repeats per timing")
    parser.add_argument("--slm", default="tiny-1m", help="preset of the reference SLM")
    parser.add_argument("--slm-batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu", help="device of the filter and the SLM")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output path")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    console = Console()
    slm_s = slm_epoch_seconds(args.n, args.slm, args.slm_batch_size, 0, args.device)
    rows = []
    for exploration_input in ("hidden", "gradient"):
        config = LadaConfig(exploration_input=exploration_input)
        for width in args.widths:
            costs = filter_costs(args.n, width, config, args.repeats, args.device)
            costs["fraction_of_slm_epoch"] = costs["round_s"] / slm_s
            rows.append({"hidden": width, "exploration_input": exploration_input, **costs})

    table = Table(
        title=f"Learnability filter cost per 1,000 candidates ({args.slm} epoch = "
        f"{slm_s:.2f} s per 1,000 items)"
    )
    for column in (
        "receiver hidden",
        "f2 input",
        "fit space s",
        "featurize s",
        "score s",
        "update s",
        "round s",
        "x SLM epoch",
    ):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            str(row["hidden"]),
            row["exploration_input"],
            f"{row['fit_space_s']:.3f}",
            f"{row['featurize_s']:.3f}",
            f"{row['score_s']:.3f}",
            f"{row['update_s']:.3f}",
            f"{row['round_s']:.3f}",
            f"{row['fraction_of_slm_epoch']:.3f}",
        )
    console.print(table)

    result = {
        "benchmark": "filter",
        "n_candidates": args.n,
        "slm": args.slm,
        "slm_epoch_s_per_1000": slm_s,
        "config": LadaConfig().model_dump(mode="json"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "device": args.device,
            "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        },
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
