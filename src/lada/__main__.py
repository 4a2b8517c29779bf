"""`python -m lada` is the `lada` command."""

from lada.cli import app

app()
