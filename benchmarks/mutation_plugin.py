"""pytest plugin for mutation runs: `benchmarks/mutation.py` copies it into `mutants/` and loads
it with PYTEST_PLUGINS into every pytest session mutmut starts. It changes no verdict, only how
soon one comes:

- the tests judging a mutant run fastest first (durations from mutmut's own stats), so a
  mutant that a unit test kills in milliseconds is not first run through the slow tests that
  also reach its function;
- the heap is frozen when a session ends: mutmut forks each mutant's session from a process
  that has torch loaded, and a frozen heap spares every fork's garbage collector the walk
  through it (and the memory copies that walk causes).
"""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any


def pytest_collection_modifyitems(session: Any, config: Any, items: list[Any]) -> None:
    try:  # mutmut runs pytest inside mutants/, beside its stats file
        durations = json.loads(Path("mutmut-stats.json").read_text())["duration_by_test"]
    except (OSError, ValueError, KeyError):
        return
    items.sort(key=lambda item: durations.get(item.nodeid, 0.0))  # stable: ties keep order


def pytest_unconfigure(config: Any) -> None:
    gc.freeze()
