"""`lada deploy ...`: helpers for running `lada` on a Flower deployment (docs/deployment.md)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

deploy_app = typer.Typer(no_args_is_help=True)


@deploy_app.command("certs")
def certs(
    out: Path = typer.Argument(..., file_okay=False, help="Folder for the keys (created)."),
    host: list[str] = typer.Option(
        [], "--host", help="SuperLink host name or IP the certificate is valid for (repeatable)."
    ),
    supernodes: int = typer.Option(2, min=0, help="SuperNode key pairs to create."),
) -> None:
    """Write a test CA, a SuperLink TLS certificate and SuperNode authentication keys."""
    from lada.federation.certs import generate

    keys = generate(out, hosts=host or None, n_supernodes=supernodes)
    console = Console()
    console.print(f"CA certificate      {keys.ca_cert}")
    console.print(f"SuperLink cert/key  {keys.server_cert}  {keys.server_key}")
    for private, public in keys.supernodes:
        console.print(f"SuperNode key pair  {private}  {public}")
    console.print("[yellow]test keys: use your organisation's CA for production deployments")
