"""`lada pretrain NAME`: retrain a shipped base from its recorded config and export it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from lada.models.pretrain import is_pretrained, pretrained_llm
from lada.models.shipped import SHIPPED, WEIGHTS_DIR, export_shipped, measure
from lada.models.training import optimizer_steps

#: Items per domain of the small fixed sample the tests re-score the shipped weights on.
SAMPLE_PER_DOMAIN = 20
#: The suite of the decisive experiment, on which every shipped base is also measured.
PROOF_SUITE = "proof"


def pretrain(
    name: str = typer.Argument(..., help=f"Shipped model to train: {', '.join(SHIPPED)}."),
    out: Path = typer.Option(
        WEIGHTS_DIR, "--out", help="Folder for <name>.safetensors and <name>.json."
    ),
    test_per_domain: int = typer.Option(
        50, "--test-per-domain", min=1, help="Fresh reserved items per domain to measure on."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda:0, ..."),
    threads: int = typer.Option(0, "--threads", min=0, help="torch CPU threads (0: default)."),
) -> None:
    """Train NAME exactly as shipped (cached by its config), measure it, write fp16 weights."""
    import torch

    from lada.models.pretrain import pretraining_items

    if name not in SHIPPED:
        raise typer.BadParameter(f"unknown shipped model {name!r}; known: {sorted(SHIPPED)}")
    if threads:
        torch.set_num_threads(threads)
    console = Console(stderr=True)
    shipped = SHIPPED[name]
    cached = is_pretrained(shipped.pretrain)
    started = time.perf_counter()
    model = pretrained_llm(shipped.pretrain, device=device, console=console)
    trained_s = time.perf_counter() - started
    with torch.no_grad():  # measure exactly what ships: the weights rounded to fp16
        for tensor in model.model.state_dict().values():
            tensor.copy_(tensor.half().to(tensor.dtype))
    n_items = len(pretraining_items(shipped.pretrain))
    measured = measure(model, shipped, test_per_domain)
    record: dict[str, Any] = {
        "pretraining_items": n_items,
        "optimizer_steps": optimizer_steps(
            n_items, shipped.pretrain.batch_size, shipped.pretrain.epochs
        ),
        # Seconds this command spent training (None: the weights came from the local cache).
        "pretraining_seconds": None if cached else round(trained_s, 1),
        "torch_threads": torch.get_num_threads(),
        "measured": measured,
        "sample": measure(model, shipped, per_domain=SAMPLE_PER_DOMAIN),
    }
    # Every base is also measured on the decisive experiment's levels, where the teacher must
    # be competent and the students weak.
    proof = measure(model, shipped, test_per_domain, suite=PROOF_SUITE)
    record["proof_levels"] = proof["per_domain"]
    path = export_shipped(model.model, shipped, record, out)
    table = Table(title=f"{name}: accuracy on fresh reserved questions")
    table.add_column("domain")
    table.add_column("accuracy", justify="right")
    for domain, acc in measured["per_domain"].items():
        table.add_row(domain, f"{acc:.1%}")
    Console().print(table)
    console.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    console.print(json.dumps({k: v for k, v in record.items() if k != "sample"}, indent=2))
