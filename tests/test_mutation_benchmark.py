"""The mutation benchmark's reading of mutmut's state (`python benchmarks/mutation.py`); none of
it needs mutmut installed."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

import mutation  # noqa: E402
import mutation_plugin  # noqa: E402


def test_scope_is_the_method_and_the_answer_checker_judged_by_fast_tests() -> None:
    scope = mutation.read_scope()
    assert scope.modules["lada.tasks.answers"] == "src/lada/tasks/answers.py"
    assert scope.modules["lada.method.filter"] == "src/lada/method/filter.py"
    assert scope.modules["lada.method"] == "src/lada/method/__init__.py"
    assert all(m == "lada.tasks.answers" or m.startswith("lada.method") for m in scope.modules)
    root = Path(mutation.ROOT)
    assert scope.tests and all((root / test).is_file() for test in scope.tests)
    assert "tests/test_end_to_end.py" not in scope.tests
    # Every accepted survivor names a module in scope (a renamed module would orphan it).
    assert all(mutation.module_of_mutant(p) in scope.modules for p in mutation.ACCEPTED)


def test_paths_pick_modules_in_the_given_order() -> None:
    scope = mutation.read_scope()
    chosen = mutation.chosen_modules(scope, ["src/lada/method/rewards.py", "src/lada/tasks"])
    assert chosen == ["lada.method.rewards", "lada.tasks.answers"]
    everything = mutation.chosen_modules(scope, None)
    assert everything[:2] == ["lada.tasks.answers", "lada.method.rewards"]
    assert sorted(everything) == sorted(scope.modules)
    with pytest.raises(SystemExit, match="nothing under it"):
        mutation.chosen_modules(scope, ["src/lada/models"])


def test_mutant_names_map_to_their_module() -> None:
    name = "lada.method.filter.xǁLearnabilityFilterǁselect__mutmut_3"
    assert mutation.module_of_mutant(name) == "lada.method.filter"
    assert mutation.module_of_mutant("lada.tasks.answers.x__text_key__mutmut_12") == (
        "lada.tasks.answers"
    )
    assert mutation.module_of_path("src/lada/method/__init__.py") == "lada.method"


def test_verdicts_and_counts_from_a_meta_file(tmp_path: Path) -> None:
    codes = {
        "m.x_f__mutmut_1": 1,  # killed
        "m.x_f__mutmut_2": 0,  # survived, accepted below
        "m.x_f__mutmut_3": 0,  # survived
        "m.x_f__mutmut_4": 36,  # timeout: counts as killed
        "m.x_f__mutmut_5": 33,  # no tests
        "m.x_f__mutmut_6": None,  # not checked yet
    }
    meta = tmp_path / "mutants" / "src" / "m.py.meta"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"exit_code_by_key": codes, "durations_by_key": {}}))
    assert mutation.verdicts("src/m.py", tmp_path) == codes
    assert mutation.verdicts("src/other.py", tmp_path) == {}
    accepted = {"m.x_f__mutmut_2": "equivalent"}
    row = mutation.module_row(codes, accepted)
    assert row["mutants"] == 6
    assert (row["killed"], row["survived"], row["timeout"]) == (1, 2, 1)
    assert (row["no_tests"], row["not_checked"], row["accepted"]) == (1, 1, 1)
    assert row["killed_share"] == pytest.approx(2 / 5)  # (killed + timeout) / checked
    assert row["killed_share_of_killable"] == pytest.approx(2 / 4)
    total = mutation.total_row({"m": row, "n": mutation.module_row({}, accepted)})
    assert total["mutants"] == 6 and total["killed_share"] == pytest.approx(2 / 5)
    assert total["killed_share_of_killable"] == pytest.approx(2 / 4)
    assert mutation.module_row({}, accepted)["killed_share"] is None
    assert mutation.accepted_reason("m.x_f__mutmut_2", accepted) == "equivalent"
    assert mutation.accepted_reason("m.x_f__mutmut_3", accepted) is None


def test_short_diff_keeps_only_the_changed_lines() -> None:
    diff = "--- a.py\n+++ a.py\n@@ -1,3 +1,3 @@\n def f():\n-    return 1\n+    return 2\n x = 0"
    assert mutation.short_diff(diff) == "-    return 1\n+    return 2"


def test_plugin_runs_the_fastest_tests_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = [SimpleNamespace(nodeid=n) for n in ("slow", "unknown", "fast", "medium")]
    mutation_plugin.pytest_collection_modifyitems(None, None, items)  # no stats: order kept
    assert [i.nodeid for i in items] == ["slow", "unknown", "fast", "medium"]
    monkeypatch.chdir(tmp_path)
    durations = {"slow": 3.0, "fast": 0.01, "medium": 0.5}
    (tmp_path / "mutmut-stats.json").write_text(json.dumps({"duration_by_test": durations}))
    mutation_plugin.pytest_collection_modifyitems(None, None, items)
    assert [i.nodeid for i in items] == ["unknown", "fast", "medium", "slow"]
