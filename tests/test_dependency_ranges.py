"""pyproject.toml's dependency ranges admit the tested set that constraints.txt pins.

The ranges let `pip install lada` share an environment with other libraries; constraints.txt is
the exact set CI tests. A range tightened past the tested version, or a dependency added
without a pin, fails here (no network: the files alone are read).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
REQUIREMENTS = [
    Requirement(line)
    for line in [*PROJECT["dependencies"], *sum(PROJECT["optional-dependencies"].values(), [])]
]


def _pins() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for number, raw in enumerate((ROOT / "constraints.txt").read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", (
            f"constraints.txt:{number}: {raw!r} is not one exact `name==version` pin"
        )
        name = canonicalize_name(requirement.name)
        assert name not in pins, f"constraints.txt:{number}: {requirement.name} pinned twice"
        pins[name] = Version(specifiers[0].version)
    return pins


PINS = _pins()


@pytest.mark.parametrize("requirement", REQUIREMENTS, ids=lambda r: r.name)
def test_every_dependency_is_pinned_and_its_range_admits_the_pin(requirement: Requirement) -> None:
    pin = PINS.get(canonicalize_name(requirement.name))
    assert pin is not None, (
        f"{requirement.name} is declared in pyproject.toml but not pinned in constraints.txt"
    )
    assert requirement.specifier.contains(pin, prereleases=True), (
        f"pyproject.toml's {requirement} excludes the tested {requirement.name}=={pin}"
    )


def test_every_dependency_is_a_range_not_a_pin() -> None:
    pinned = [str(r) for r in REQUIREMENTS if any(s.operator in ("==", "===") for s in r.specifier)]
    assert not pinned, f"exact pins belong in constraints.txt, not pyproject.toml: {pinned}"


def test_requires_python_admits_the_tested_python() -> None:
    requires = SpecifierSet(PROJECT["requires-python"])
    assert requires.contains("3.11") and requires.contains("3.11.7")


def test_range_check_fails_for_a_range_that_excludes_the_pin() -> None:
    """The check above is not vacuous: a range tightened past the pin is caught."""
    pin = PINS[canonicalize_name("transformers")]
    assert not Requirement(f"transformers>{pin}").specifier.contains(pin, prereleases=True)
