"""`lada` starts without importing the heavy libraries: sub-commands load when invoked."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from lada.cli import COMMANDS, app, load_command

HEAVY = ("torch", "transformers", "sklearn", "flwr", "peft")


def test_top_level_help_lists_every_command_without_importing_heavy_libraries() -> None:
    code = (
        "import sys\n"
        "from lada.cli import app\n"
        "try:\n"
        "    app(['--help'], prog_name='lada')\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print('LOADED', sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "LOADED []" in out
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_listed_command_loads_and_its_line_matches_its_own_help(name: str) -> None:
    command = load_command(name)
    assert command.name == name
    listed = COMMANDS[name][2]
    assert (command.help or "").strip().splitlines()[0] == listed


def test_invoking_a_listed_command_runs_the_real_one() -> None:
    result = CliRunner().invoke(app, ["data", "show", "no-such-suite-or-file"])
    assert result.exit_code != 0
    assert "no-such-suite-or-file" in result.output
    unknown = CliRunner().invoke(app, ["nosuch"])
    assert unknown.exit_code != 0 and "No such command" in unknown.output
