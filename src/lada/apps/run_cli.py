"""`lada run CONFIG`: one experiment, one run folder, a per-client table at the end."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from lada.experiments.config import ConfigError, load_config

SET_HELP = "Override a config field, e.g. --set lada.alpha=0.3 --set rounds=2 (repeatable)."
TRACKER_HELP = escape(  # help text is rich markup: keep the extra's brackets
    "Log each round to a tracker: tensorboard, mlflow (repeatable or comma-separated; replaces "
    "tracking.backends). Needs: pip install 'lada[tracking]'."
)


def run(
    config: Path = typer.Argument(..., exists=True, dir_okay=False, help="TOML or YAML config."),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    seed: int | None = typer.Option(None, help="Override the config's seed."),
    runtime: str | None = typer.Option(None, help="inprocess (default) or flower-sim."),
    resume: Path | None = typer.Option(
        None, file_okay=False, help="Continue this run folder from its last complete round."
    ),
    tracker: list[str] = typer.Option([], "--tracker", help=TRACKER_HELP),
) -> None:
    """Run one experiment and write its run folder (config, metrics, selections, summary)."""
    console = Console()
    overrides = list(set_)
    if seed is not None:
        overrides.append(f"seed={seed}")
    if runtime is not None:
        overrides.append(f'runtime="{runtime}"')
    if tracker:
        names = [n.strip() for t in tracker for n in t.split(",") if n.strip()]
        overrides.append(f"tracking.backends={json.dumps(names)}")
    try:
        cfg = load_config(config, overrides)
    except ConfigError as err:
        console.print(f"[red]invalid config[/]\n{escape(str(err))}")
        raise typer.Exit(2) from None
    from lada.apps.run import run_experiment
    from lada.experiments.checkpoint import CheckpointError
    from lada.experiments.runner import client_table

    try:
        if resume is not None:
            result = run_experiment(cfg, console=console, run_dir=resume, resume=True)
        else:
            result = run_experiment(cfg, console=console)
    except (ConfigError, CheckpointError) as err:
        console.print(f"[red]cannot run[/]: {escape(str(err))}")
        raise typer.Exit(2) from None
    console.print(client_table(result.summary))
    console.print(f"run folder: {result.run_dir}")


def compare_cmd(
    config: Path = typer.Argument(..., exists=True, dir_okay=False, help="TOML or YAML config."),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    seeds: list[int] = typer.Option([], "--seed", help="Seeds (repeatable); default: config."),
    variants: list[str] = typer.Option(
        [], "--variant", help="Variants to run (repeatable); default: all."
    ),
    out: Path | None = typer.Option(None, help="Output folder (default under output_dir)."),
) -> None:
    """Host alone vs host + LaDa and its ablations over seeds: a Markdown table and plots."""
    console = Console()
    try:
        cfg = load_config(config, list(set_))
    except ConfigError as err:
        console.print(f"[red]invalid config[/]\n{escape(str(err))}")
        raise typer.Exit(2) from None
    from lada.apps.run import run_experiment
    from lada.experiments.compare import SWEEPS, VARIANTS, compare, is_variant

    unknown = [v for v in variants if not is_variant(v)]
    if unknown:
        console.print(
            f"[red]unknown variants {unknown}; known: {list(VARIANTS)} or a sweep point such as "
            f"{next(iter(SWEEPS))}=0.3[/]"
        )
        raise typer.Exit(2)
    folder = compare(
        cfg,
        run=run_experiment,
        variants=variants or tuple(VARIANTS),
        seeds=seeds or None,
        out=out,
        console=console,
    )
    console.print(f"comparison folder: {folder}")
