"""`lada data ...`: validate and inspect reasoning data files and suites.

`check` is meant for a data file before a long run: it either reports what the loader will see
or stops at the first bad row with `file:line: field: problem` and exit code 1. `show` prints a
few items as the models will be taught them, from a file or a named reasoning-gym suite.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from lada.tasks.errors import DataFormatError
from lada.tasks.item import ANSWER_KINDS, ReasoningItem
from lada.tasks.loaders import LoadResult, load_file
from lada.tasks.prompts import OPTION_LETTERS

data_app = typer.Typer(no_args_is_help=True)

FormatOption = Annotated[
    str,
    typer.Option(
        "--format",
        "-f",
        help="Row format: auto, gsm8k, svamp, mc or bigbench.",
        case_sensitive=False,
    ),
]


@data_app.command("check")
def check(
    path: Annotated[Path, typer.Argument(help="Data file (.jsonl, .json) or saved dataset.")],
    format: FormatOption = "auto",
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Skip bad rows, list them, and go on.")
    ] = False,
) -> None:
    """Load a data file and count its items per answer kind, or report the first bad row."""
    result = _load_or_exit(path, format.lower(), skip_bad)
    console = Console()
    for error in result.skipped:
        typer.echo(f"skipped {error}", err=True)
    typer.echo(f"{path}: format {result.format}")
    table = Table()
    table.add_column("answer kind")
    table.add_column("items", justify="right")
    counts: Counter[str] = Counter(item.answer_kind for item in result.items)
    for kind in ANSWER_KINDS:
        if counts[kind]:
            table.add_row(kind, str(counts[kind]))
    table.add_row("total", str(len(result.items)), style="bold")
    if result.skipped:
        table.add_row("skipped (bad)", str(len(result.skipped)), style="yellow")
    console.print(table)
    if not result.items:
        typer.echo(f"{path}: no valid items", err=True)
        raise typer.Exit(code=1)


@data_app.command("show")
def show(
    suite_or_path: Annotated[
        str, typer.Argument(help="A reasoning-gym suite name (e.g. default) or a data file.")
    ],
    n: Annotated[int, typer.Option("-n", "--n", min=1, help="How many items to show.")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the sample.")] = 0,
    format: FormatOption = "auto",
) -> None:
    """Print a few items with their question, rationale and answer (bad rows are skipped)."""
    if Path(suite_or_path).exists():
        result = _load_or_exit(Path(suite_or_path), format.lower(), skip_bad=True)
        if result.skipped:
            typer.echo(
                f"skipped {len(result.skipped)} bad row(s), first: {result.skipped[0]} "
                "(run `lada data check` for all)",
                err=True,
            )
        items = result.items
        if not items:
            raise typer.Exit(code=1)
        if len(items) > n:
            items = random.Random(seed).sample(items, n)
    else:
        items = _load_suite_or_exit(suite_or_path, n, seed)
    console = Console()
    for item in items:
        console.print(_item_panel(item))


def _load_or_exit(path: Path, format: str, skip_bad: bool) -> LoadResult:
    try:
        return load_file(path, format, skip_bad)  # type: ignore[arg-type]
    except DataFormatError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(code=1) from None


def _load_suite_or_exit(name: str, n: int, seed: int) -> list[ReasoningItem]:
    """Items of a named suite; the suite module is imported only here (it pulls reasoning-gym)."""
    from lada.tasks.gym_suite import SUITES, load_suite

    if name not in SUITES:
        typer.echo(
            f"{name}: not a file and not a suite; suites: {', '.join(sorted(SUITES))}", err=True
        )
        raise typer.Exit(code=1)
    return load_suite(name, n=n, seed=seed)[:n]


def _item_panel(item: ReasoningItem) -> Panel:
    """One item as a panel; Text objects keep brackets in data from being read as markup."""
    parts: list[Text] = [Text("Q: ", style="bold") + Text(item.question)]
    if item.choices:
        options = "  ".join(
            f"({OPTION_LETTERS[index]}) {choice}" for index, choice in enumerate(item.choices)
        )
        parts.append(Text("Options: ", style="bold") + Text(options))
    if item.rationale:
        parts.append(Text("Rationale:", style="bold"))
        parts.append(Text(item.rationale, style="dim"))
    parts.append(Text("Answer: ", style="bold") + Text(item.answer, style="green"))
    title = Text(f"{item.id}  ·  {item.domain}  ·  {item.answer_kind}")
    return Panel(Group(*parts), title=title, title_align="left")
