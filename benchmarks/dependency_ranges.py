"""Do the dependency ranges in pyproject.toml still resolve, and to what?

Asks pip to resolve the project from the package registries *without* constraints.txt
(`pip install --dry-run --ignore-installed --report`), so the ranges alone decide, and lists
each package of constraints.txt (the tested set) beside the version the ranges resolve to:
unchanged, changed, new (resolved, not in constraints.txt) or absent (in constraints.txt, not
resolved). Nothing is installed. Exits non-zero only when resolution fails; a changed version
is information (what a fresh `pip install lada` would get today), not a failure.

    python benchmarks/dependency_ranges.py [--no-dev] [--all]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

from common import RESULTS, ROOT, make_console, print_table, write_result
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from rich.markup import escape

CONSTRAINTS = ROOT / "constraints.txt"
PYPROJECT = ROOT / "pyproject.toml"


def read_constraints(path: Path) -> dict[str, str]:
    """`name==version` lines of a constraints file, by canonical name."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        (specifier,) = requirement.specifier  # one exact pin per line
        pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


def declared(path: Path) -> dict[str, str]:
    """Canonical name -> 'direct' or 'dev' for each dependency pyproject.toml declares."""
    project = tomllib.loads(path.read_text())["project"]
    kinds = {canonicalize_name(Requirement(r).name): "direct" for r in project["dependencies"]}
    for r in project.get("optional-dependencies", {}).get("dev", []):
        kinds.setdefault(canonicalize_name(Requirement(r).name), "dev")
    return kinds


def pip_arguments(target: str, report: str) -> list[str]:
    """`pip install` arguments that resolve `target` from the registries and install nothing."""
    return [
        "install",
        "--dry-run",
        "--ignore-installed",
        "--quiet",
        "--report",
        report,
        "-e",
        target,
    ]


def resolve(target: str) -> tuple[dict[str, str] | None, str]:
    """(name -> version pip would install, or None when resolution fails; pip's output)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        command = [sys.executable, "-m", "pip", *pip_arguments(target, str(report))]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        output = done.stdout + done.stderr
        if done.returncode != 0 or not report.exists():
            return None, output
        installs = json.loads(report.read_text())["install"]
    versions = {
        canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
        for item in installs
    }
    versions.pop("lada", None)  # the project itself
    return versions, output


def compare(
    pins: dict[str, str], resolved: dict[str, str], kinds: dict[str, str]
) -> list[dict[str, Any]]:
    """One row per package in either set: the pin, the resolved version and how they relate."""
    rows = []
    for name in sorted(set(pins) | set(resolved)):
        pin, version = pins.get(name), resolved.get(name)
        if pin is None:
            status = "new"
        elif version is None:
            status = "absent"
        elif SpecifierSet(f"=={pin}").contains(version, prereleases=True):
            status = "unchanged"  # `==2.13.0` also matches a local build such as 2.13.0+cpu
        else:
            status = "changed"
        rows.append(
            {
                "package": name,
                "kind": kinds.get(name, "transitive"),
                "constrained": pin,
                "resolved": version,
                "status": status,
            }
        )
    order = {"direct": 0, "dev": 1, "transitive": 2}
    return sorted(rows, key=lambda row: (order[row["kind"]], row["package"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--no-dev", action="store_true", help="resolve `-e .` (default: `-e .[dev]`)"
    )
    parser.add_argument("--all", action="store_true", help="list unchanged transitive packages too")
    parser.add_argument("--out", type=Path, help="JSON output path")
    args = parser.parse_args()
    started = time.perf_counter()
    console = make_console()
    target = "." if args.no_dev else ".[dev]"
    pins = read_constraints(CONSTRAINTS)
    kinds = declared(PYPROJECT)
    resolved, output = resolve(target)
    shown_command = " ".join(["python -m pip", *pip_arguments(target, "REPORT.json")])
    if resolved is None:
        console.print(f"[red]resolution failed[/]: {shown_command}\n{output[-3000:]}")
        write_result(
            "dependency_ranges",
            {
                "target": target,
                "pip_command": shown_command,
                "resolved": False,
                "error": output[-5000:],
            },
            args.out or RESULTS / "dependency_ranges.json",
            started,
        )
        sys.exit(1)
    rows = compare(pins, resolved, kinds)
    statuses = ("unchanged", "changed", "new", "absent")
    counts = {status: sum(r["status"] == status for r in rows) for status in statuses}
    shown = [r for r in rows if args.all or r["kind"] != "transitive" or r["status"] != "unchanged"]
    print_table(
        console,
        escape(f"constraints.txt vs what the ranges resolve to (pip install -e {target}, no -c)"),
        ["package", "kind", "constraints.txt", "ranges resolve to", "status"],
        [
            [r["package"], r["kind"], r["constrained"] or "-", r["resolved"] or "-", r["status"]]
            for r in shown
        ],
    )
    console.print(
        ", ".join(f"{n} {status}" for status, n in counts.items())
        + f" ({len(rows)} packages; unchanged transitive packages hidden unless --all)"
    )
    pip_version = subprocess.run(
        [sys.executable, "-m", "pip", "--version"], capture_output=True, text=True
    ).stdout.split(" from ")[0]
    path = write_result(
        "dependency_ranges",
        {
            "target": target,
            "pip": pip_version,
            "pip_command": shown_command,
            "resolved": True,
            "counts": counts,
            "packages": rows,
        },
        args.out or RESULTS / "dependency_ranges.json",
        started,
    )
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
