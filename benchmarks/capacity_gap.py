"""Capacity gap: per-domain test accuracy of two tiny model sizes trained at the same budget.

Every preset trains from scratch on the same items, with the same batch size, the same number of
optimizer steps and the same learning-rate schedule (warmup + decay; only the peak rate differs
by width, `--lr`). Each domain level is scored on held-out items: greedy-path accuracy, the
token-mean NLL of the gold path, and a few generated paths to show how a model fails.

    python benchmarks/capacity_gap.py [--presets tiny-1m tiny-10m] [--steps 300] [--threads 1]
        [--domains chain_sum:1 gcd:1 ... | --suite default] [--seed 0] [--jobs 2]
        [--eval-every 100]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from common import constant_answer_accuracy, write_result  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from lada.models.presets import TINY_PRESETS, load_model  # noqa: E402
from lada.models.training import DECAY_SHAPES, LRSchedule, evaluate, sft  # noqa: E402
from lada.tasks.gym_suite import SUITES, DomainSpec, SuiteConfig, build_suite  # noqa: E402
from lada.tasks.item import ReasoningItem  # noqa: E402
from lada.tasks.prompts import gold_path, render_prompt  # noqa: E402

#: Low rungs (one-digit facts, one or two steps) and rungs with copying of several numbers,
#: multi-digit arithmetic or Euclid steps.
DEFAULT_DOMAINS = [
    "chain_sum:1",
    "basic_arithmetic:1",
    "chain_sum:2",
    "leg_counting:1",
    "gcd:1",
    "products:2",
]

#: Peak learning rate per preset: each tiny preset's own (`TinySpec.learning_rate`).
DEFAULT_LR = {name: spec.learning_rate for name, spec in TINY_PRESETS.items()}


def level_key(item: ReasoningItem) -> str:
    return f"{item.domain}:{item.difficulty}"


def parse_specs(args: argparse.Namespace) -> list[DomainSpec]:
    if args.suite:
        return list(SUITES[args.suite].domains)
    specs = []
    for entry in args.domains:
        name, _, level = entry.partition(":")
        specs.append(DomainSpec(name=name, difficulty=int(level or 1)))
    return specs


def split_items(
    specs: list[DomainSpec], n_train: int, n_test: int, seed: int
) -> tuple[list[ReasoningItem], list[ReasoningItem]]:
    """Disjoint train and test items per domain level (distinct questions across the suite).

    Each level is shuffled before it is cut: when a level's question space is nearly used up
    (gcd 1 has ~2,500 questions), the last questions the generator finds are not a fair sample
    (93% of the last 100 of 1,900 gcd 1 items have the answer 1, against half overall).
    """
    items = build_suite(
        SuiteConfig(
            domains=specs,
            items_per_domain=n_train + n_test,
            seed=seed,
            max_attempts_per_item=200,
        )
    )
    by_level: dict[str, list[ReasoningItem]] = defaultdict(list)
    for item in items:
        by_level[level_key(item)].append(item)
    rng = random.Random(seed)
    for level in by_level.values():
        rng.shuffle(level)
    train = [it for level in by_level.values() for it in level[:n_train]]
    test = [it for level in by_level.values() for it in level[n_train:]]
    return train, test


def loss_curve(losses: list[float], points: int = 10) -> list[float]:
    """Mean loss over `points` equal windows of the run."""
    width = max(1, len(losses) // points)
    return [
        round(sum(losses[lo : lo + width]) / len(losses[lo : lo + width]), 4)
        for lo in range(0, len(losses) - width + 1, width)
    ]


def run_preset(
    preset: str,
    train: list[ReasoningItem],
    test: list[ReasoningItem],
    args: argparse.Namespace,
    schedule: LRSchedule,
    learning_rate: float,
) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(preset, device="cpu", seed=args.seed, learning_rate=learning_rate)
    steps_per_epoch = -(-len(train) // args.batch_size)
    epochs = args.epochs or max(1, round(args.steps / steps_per_epoch))
    gold = [gold_path(it) for it in test]
    max_new_tokens = max(model.count_tokens(gold)) + args.extra_new_tokens
    curve: list[dict] = []

    def checkpoint_eval(step: int) -> None:
        """Per-level test accuracy every `--eval-every` steps: the learning curve."""
        if not args.eval_every or step % args.eval_every:
            return
        began = time.perf_counter()
        result = evaluate(model, test, max_new_tokens=max_new_tokens)
        hits: dict[str, list[bool]] = defaultdict(list)
        for item, prediction in zip(test, result.predictions, strict=True):
            hits[level_key(item)].append(prediction.correct)
        point = {"step": step, **{k: round(sum(v) / len(v), 4) for k, v in hits.items()}}
        point["eval_seconds"] = round(time.perf_counter() - began, 1)
        curve.append(point)
        print(f"[{preset}] {json.dumps(point)}", flush=True)

    start = time.perf_counter()
    losses = sft(
        model,
        train,
        epochs=epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        desc=preset,
        progress=False,
        schedule=schedule,
        on_step=checkpoint_eval,
    )
    train_seconds = time.perf_counter() - start
    train_seconds -= sum(point["eval_seconds"] for point in curve)

    start = time.perf_counter()
    result = evaluate(model, test, max_new_tokens=max_new_tokens)
    nll = -model.sequence_logprobs([render_prompt(it) for it in test], gold, normalize=True)
    eval_seconds = time.perf_counter() - start

    correct: dict[str, list[bool]] = defaultdict(list)
    level_nll: dict[str, list[float]] = defaultdict(list)
    samples: dict[str, list[dict]] = defaultdict(list)
    for item, prediction, item_nll in zip(test, result.predictions, nll.tolist(), strict=True):
        key = level_key(item)
        correct[key].append(prediction.correct)
        level_nll[key].append(item_nll)
        if len(samples[key]) < args.samples:
            samples[key].append(
                {"question": item.question, "gold": item.answer, "path": prediction.path}
            )
    tail = losses[-max(1, len(losses) // 20) :]
    return {
        "preset": preset,
        "parameters": model.num_parameters(),
        "learning_rate": learning_rate,
        "epochs": epochs,
        "steps": len(losses),
        "train_seconds": round(train_seconds, 1),
        "seconds_per_step": round(train_seconds / max(1, len(losses)), 3),
        "eval_seconds": round(eval_seconds, 1),
        "max_new_tokens": max_new_tokens,
        "loss_first_step": round(losses[0], 4),
        "loss_last_5pct": round(sum(tail) / len(tail), 4),
        "loss_curve": loss_curve(losses),
        "accuracy": result.accuracy,
        "accuracy_curve": curve,
        "per_level_accuracy": {k: sum(v) / len(v) for k, v in correct.items()},
        "per_level_test_nll": {k: round(sum(v) / len(v), 4) for k, v in level_nll.items()},
        "per_level_n": {k: len(v) for k, v in correct.items()},
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny-1m", "tiny-10m"])
    parser.add_argument("--domains", nargs="+", default=DEFAULT_DOMAINS, help="name:level ...")
    parser.add_argument("--suite", choices=sorted(SUITES), help="use a named suite's domains")
    parser.add_argument("--train-per-domain", type=int, default=150)
    parser.add_argument("--test-per-domain", type=int, default=30)
    parser.add_argument("--steps", type=int, default=300, help="target optimizer steps")
    parser.add_argument("--epochs", type=int, default=0, help="overrides --steps when > 0")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", nargs="*", default=[], help="preset=rate overrides")
    parser.add_argument("--warmup-fraction", type=float, default=0.05)
    parser.add_argument("--decay", choices=DECAY_SHAPES, default="cosine")
    parser.add_argument("--min-lr-fraction", type=float, default=0.1)
    parser.add_argument("--extra-new-tokens", type=int, default=24, help="beyond longest gold")
    parser.add_argument("--samples", type=int, default=2, help="paths kept per level")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per preset")
    parser.add_argument("--jobs", type=int, default=1, help="presets trained in parallel")
    parser.add_argument("--eval-every", type=int, default=0, help="learning-curve interval")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default: results/)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    unknown = [p for p in args.presets if p not in TINY_PRESETS]
    if unknown:
        parser.error(f"--presets: {unknown} are not tiny presets ({sorted(TINY_PRESETS)})")
    rates = dict(DEFAULT_LR)
    for entry in args.lr:
        name, _, value = entry.partition("=")
        rates[name] = float(value)
    schedule = LRSchedule(
        warmup_fraction=args.warmup_fraction,
        decay=args.decay,
        min_lr_fraction=args.min_lr_fraction,
    )

    wall = time.perf_counter()
    specs = parse_specs(args)
    train, test = split_items(specs, args.train_per_domain, args.test_per_domain, args.seed)
    jobs = [(p, train, test, args, schedule, rates.get(p, 1e-3)) for p in args.presets]
    if args.jobs > 1:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
            runs = list(pool.map(run_preset, *zip(*jobs, strict=True)))
    else:
        runs = [run_preset(*job) for job in jobs]

    levels = list(dict.fromkeys(level_key(it) for it in test))
    baseline = constant_answer_accuracy(train, test, level_key)
    table = Table(
        title=f"Test accuracy (test NLL/token) after {runs[0]['steps']} steps of batch "
        f"{args.batch_size} on {len(train)} items"
    )
    table.add_column("domain:level")
    table.add_column("constant answer", justify="right")
    for run in runs:
        table.add_column(f"{run['preset']} ({run['parameters'] / 1e6:.2f}M)", justify="right")
    level_sizes = Counter(level_key(it) for it in test)
    baseline["all"] = sum(baseline[k] * n for k, n in level_sizes.items()) / len(test)
    for level in [*levels, "all"]:
        cells = [f"{baseline[level]:.0%}"]
        for run in runs:
            if level == "all":
                cells.append(f"{run['accuracy']:.0%} (loss {run['loss_last_5pct']:.3f})")
            else:
                acc = run["per_level_accuracy"][level]
                cells.append(f"{acc:.0%} ({run['per_level_test_nll'][level]:.3f})")
        table.add_row(level, *cells)
    Console().print(table)

    payload = {
        "torch_threads_per_preset": torch.get_num_threads(),
        "setup": {
            "levels": levels,
            "train_items": len(train),
            "test_items": len(test),
            "constant_answer_accuracy": baseline,
            "batch_size": args.batch_size,
            "schedule": schedule.model_dump(),
            "seed": args.seed,
        },
        "runs": runs,
    }
    write_result("capacity_gap", payload, args.out, wall)


if __name__ == "__main__":
    main()
