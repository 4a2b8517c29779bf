"""The `lada` command: one Typer app that gathers the sub-commands of each layer.

Sub-commands are imported when one is invoked, not when `lada` starts: most of them need torch,
transformers, scikit-learn or Flower, whose imports take seconds, and `lada --help` or `lada data
check` should answer at once. `lada --help` lists the sub-commands from `COMMANDS` (name, module,
one line of help) without importing any of them.
"""

from __future__ import annotations

import importlib
from typing import Any

import click
import typer
import typer.main
from typer.core import TyperGroup

#: Sub-command -> (module, attribute, one line for `lada --help`). The attribute is a Typer app
#: (a group of commands) or one command function.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": (
        "lada.apps.run_cli",
        "run",
        "Run one experiment and write its run folder (config, metrics, selections, summary).",
    ),
    "compare": (
        "lada.apps.run_cli",
        "compare_cmd",
        "Host alone vs host + LaDa and its ablations over seeds: a Markdown table and plots.",
    ),
    "pretrain": (
        "lada.experiments.pretrain_cli",
        "pretrain",
        "Train NAME exactly as shipped (cached by its config), measure it, write fp16 weights.",
    ),
    "data": ("lada.experiments.data_cli", "data_app", "Validate and inspect reasoning data."),
    "local": (
        "lada.experiments.local_cli",
        "local_app",
        "Train and evaluate one model locally (no federation).",
    ),
    "deploy": (
        "lada.federation.deploy_cli",
        "deploy_app",
        "Helpers for Flower deployments across machines.",
    ),
}


def load_command(name: str) -> click.Command:
    """Import sub-command `name` and build its click command."""
    module, attribute, help_line = COMMANDS[name]
    target = getattr(importlib.import_module(module), attribute)
    if isinstance(target, typer.Typer):
        group = typer.main.get_group(target)
        group.name = name
        group.help = help_line  # as `add_typer(..., help=...)` would set it
        return group
    single = typer.Typer(add_completion=False)
    single.command(name)(target)
    return typer.main.get_command(single)


class ListedCommand(click.Command):
    """A sub-command as the top-level help lists it (name and one line); invoking it imports
    the real command and hands it the arguments."""

    def __init__(self, name: str, help_line: str) -> None:
        super().__init__(name, help=help_line, short_help=help_line)

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        assert self.name is not None
        return load_command(self.name).make_context(info_name, args, parent=parent, **extra)


class LazyGroup(TyperGroup):
    """The top-level group: sub-commands from `COMMANDS`, imported on use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        return ListedCommand(cmd_name, COMMANDS[cmd_name][2])


app = typer.Typer(
    name="lada",
    cls=LazyGroup,
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """Federated reasoning distillation between one LLM and many SLMs (LaDa)."""


if __name__ == "__main__":  # pragma: no cover
    app()
