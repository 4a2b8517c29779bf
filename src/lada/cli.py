"""The `lada` command: one Typer app that gathers the sub-commands of each layer."""

from __future__ import annotations

import typer

from lada.experiments.data_cli import data_app
from lada.experiments.local_cli import local_app
from lada.experiments.pretrain_cli import pretrain
from lada.experiments.run_cli import compare_cmd, run
from lada.federation.deploy_cli import deploy_app

app = typer.Typer(
    name="lada",
    help="Federated reasoning distillation between one LLM and many SLMs (LaDa).",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(data_app, name="data", help="Validate and inspect reasoning data.")
app.add_typer(local_app, name="local", help="Train and evaluate one model locally (no federation).")
app.add_typer(deploy_app, name="deploy", help="Helpers for Flower deployments across machines.")

app.command("run")(run)
app.command("compare")(compare_cmd)
app.command("pretrain")(pretrain)


if __name__ == "__main__":  # pragma: no cover
    app()
