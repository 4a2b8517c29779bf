"""How long the `lada` command takes to answer, with lazy sub-commands and with eager imports.

Each command runs `--repeats` times in a fresh Python process (what a user's shell does); the
table gives the median wall time. The eager column runs the same command after importing every
sub-command module first, as `lada` did before it loaded them on use, so the ratio is measured
side by side in one run. Goal: `lada --help`, `lada data check` and `lada data show` within 1.5 s.

    python benchmarks/cli_start.py
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, base_parser, make_console, markdown_table, write_result

from lada.cli import COMMANDS

GOAL_SECONDS = 1.5
#: name -> argv after `lada`; {data} is a small valid GSM8K-format file. The first three carry
#: the goal; `lada run --help` is shown for contrast (it builds the config's options, which need
#: the model and method layers).
CASES: dict[str, list[str]] = {
    "lada --help": ["--help"],
    "lada data check FILE": ["data", "check", "{data}"],
    "lada data show FILE": ["data", "show", "{data}", "-n", "1"],
    "lada run --help": ["run", "--help"],
}


def _command(argv: list[str], eager: bool) -> list[str]:
    preload = "".join(f"import {m}\n" for m in sorted({m for m, _, _ in COMMANDS.values()}))
    code = (
        "import sys\n"
        + (preload if eager else "")
        + "from lada.cli import app\n"
        + f"app({argv!r}, prog_name='lada')\n"
    )
    return [sys.executable, "-c", code]


def _median_seconds(command: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise RuntimeError(f"{command[-1]!r} failed: {done.stderr[-500:]}")
    return statistics.median(times)


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    started = time.perf_counter()
    console = make_console()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "items.jsonl"
        rows = [
            {"question": f"What is {a} + 2?", "answer": f"{a} + 2 = {a + 2}\n#### {a + 2}"}
            for a in range(20)
        ]
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        measured = {}
        for name, argv in CASES.items():
            argv = [a.replace("{data}", str(data)) for a in argv]
            lazy = _median_seconds(_command(argv, eager=False), args.repeats)
            eager = _median_seconds(_command(argv, eager=True), args.repeats)
            measured[name] = {"lazy_s": lazy, "eager_s": eager, "speedup": eager / lazy}
    table = markdown_table(
        ["command", "median s (lazy)", "median s (eager imports)", "speed-up", "goal"],
        [
            [
                name,
                f"{m['lazy_s']:.2f}",
                f"{m['eager_s']:.2f}",
                f"{m['speedup']:.1f}x",
                ""
                if name == "lada run --help"
                else ("met" if m["lazy_s"] <= GOAL_SECONDS else "missed"),
            ]
            for name, m in measured.items()
        ],
    )
    console.print(table)
    path = write_result(
        "cli_start",
        {"repeats": args.repeats, "goal_seconds": GOAL_SECONDS, "commands": measured},
        args.out or RESULTS / "cli_start.json",
        started,
    )
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
