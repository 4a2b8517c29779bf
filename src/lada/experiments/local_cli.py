"""`lada local`: train one model on a task suite and evaluate it, no federation involved.

The quickest way to see what a preset can and cannot learn: the per-domain accuracy table it
prints is the capacity gap that LaDa's filter exists for.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import cast

import typer
from rich.console import Console
from rich.table import Table

from lada.models.device import resolve_device
from lada.models.presets import default_learning_rate, load_model
from lada.models.training import (
    DECAY_SHAPES,
    DecayShape,
    EvalResult,
    LRSchedule,
    evaluate,
    sft,
)
from lada.tasks.gym_suite import SUITES, load_suite

local_app = typer.Typer(no_args_is_help=False)


def domain_table(title: str, results: dict[str, EvalResult]) -> Table:
    """One row per domain, one column per model."""
    table = Table(title=title)
    table.add_column("domain")
    for name in results:
        table.add_column(name, justify="right")
    domains = sorted({d for r in results.values() for d in r.per_domain})
    for domain in domains:
        table.add_row(domain, *(f"{r.per_domain.get(domain, 0.0):.1%}" for r in results.values()))
    table.add_row("[bold]all[/]", *(f"[bold]{r.accuracy:.1%}[/]" for r in results.values()))
    return table


@local_app.callback(invoke_without_command=True)
def local(
    models: list[str] = typer.Option(["tiny-1m"], "--model", "-m", help="Preset(s) to train."),
    suite: str = typer.Option("default", help=f"Task suite: {', '.join(SUITES)}."),
    train_per_domain: int = typer.Option(300, help="Training items per domain."),
    test_per_domain: int = typer.Option(50, help="Test items per domain."),
    epochs: int = typer.Option(3, min=1, help="Passes over the training items."),
    batch_size: int = typer.Option(16, min=1),
    lr: float | None = typer.Option(
        None,
        help="Peak AdamW learning rate for every model (default: each preset's own, "
        "TinySpec.learning_rate; 2e-5 for pretrained weights).",
    ),
    warmup_fraction: float = typer.Option(0.05, min=0, max=0.99, help="Warmup share of steps."),
    decay: str = typer.Option("cosine", help=f"Rate decay after warmup: {'|'.join(DECAY_SHAPES)}."),
    min_lr_fraction: float = typer.Option(0.1, min=0, max=1, help="Decay floor / peak."),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help="auto (CUDA when present, else CPU), cpu, cuda, ..."),
    out: Path | None = typer.Option(None, help="Write the results as JSON here."),
) -> None:
    """Train each model on the suite's gold rationales, then print per-domain test accuracy."""
    console = Console()
    if suite not in SUITES:
        raise typer.BadParameter(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}")
    if decay not in DECAY_SHAPES:
        shapes = f"{', '.join(DECAY_SHAPES[:-1])} or {DECAY_SHAPES[-1]}"
        raise typer.BadParameter(f"--decay: {decay!r} is not {shapes}")
    schedule = LRSchedule(
        warmup_fraction=warmup_fraction,
        decay=cast(DecayShape, decay),  # checked against DECAY_SHAPES above
        min_lr_fraction=min_lr_fraction,
    )
    n_domains = len(SUITES[suite].domains)
    items = load_suite(suite, n=(train_per_domain + test_per_domain) * n_domains, seed=seed)
    by_domain: dict[str, list] = {}
    for item in items:
        by_domain.setdefault(f"{item.domain}/d{item.difficulty}", []).append(item)
    train = [it for group in by_domain.values() for it in group[:train_per_domain]]
    test = [it for group in by_domain.values() for it in group[train_per_domain:]]
    console.print(
        f"suite {suite}: {len(train)} train / {len(test)} test items on {resolve_device(device)}"
    )
    results: dict[str, EvalResult] = {}
    timings: dict[str, float] = {}
    rates: dict[str, float] = {}
    for name in models:
        rates[name] = lr if lr is not None else default_learning_rate(name)
        model = load_model(name, device=device, seed=seed, learning_rate=rates[name])
        start = time.perf_counter()
        sft(
            model,
            train,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            desc=f"train {name}",
            schedule=schedule,
        )
        timings[name] = time.perf_counter() - start
        label = f"{name} ({model.num_parameters() / 1e6:.1f}M)"
        results[label] = evaluate(model, test)
    console.print(domain_table(f"Test accuracy after {epochs} epochs", results))
    for name, seconds in timings.items():
        console.print(f"{name}: trained in {seconds:.0f} s")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "suite": suite,
            "epochs": epochs,
            "seed": seed,
            "train_seconds": timings,
            "learning_rates": rates,
            "schedule": schedule.model_dump(),
            "results": {k: v.to_dict() for k, v in results.items()},
        }
        out.write_text(json.dumps(payload, indent=2))
