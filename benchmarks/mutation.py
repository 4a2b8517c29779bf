"""How many mutants of the method and of the answer checker do their unit tests kill?

Mutation testing with mutmut 3, a benchmark outside CI (no extra of the project installs it):

    pip install mutmut==3.8.1
    python benchmarks/mutation.py                                # all of [tool.mutmut]'s scope
    python benchmarks/mutation.py --paths src/lada/tasks/answers.py src/lada/method/rewards.py
    python benchmarks/mutation.py --report-only                  # tables + JSON, nothing run

pyproject.toml's `[tool.mutmut]` says what is mutated (`only_mutate`: `lada.method` and
`lada.tasks.answers`) and which tests judge a mutant (the fast unit tests of those modules; the
end-to-end tests would take minutes per mutant). mutmut copies the project to `mutants/`
(git-ignored) and keeps every mutant's verdict there, so a run that stops (Ctrl-C,
`--time-limit`) resumes where it stopped, and a function that changed has its mutants tested
again. Modules run one at a time, in `--paths` order (default `PRIORITY`), each as one
`mutmut run` over its mutants without a verdict, under `nice` with one worker and one thread:
the machine is shared with longer benchmarks.

Per module it prints mutants, killed, survived, timeout, no tests and the killed share
((killed + timeout) / mutants with a verdict, mutmut's score), and writes
`benchmarks/results/mutation.json` with every mutant left alive (name, status, the changed
lines), split into accepted ones (`ACCEPTED`: equivalent, or a change no caller can observe,
each with its reason) and unexplained ones, which want a test.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import RESULTS, ROOT, make_console, print_table, write_result
from rich.markup import escape

PLUGIN = Path(__file__).with_name("mutation_plugin.py")
MUTMUT_VERSION = "3.8.1"  # the version this script reads the state of (`mutants/*.meta`)

#: Order of the modules when `--paths` does not give one: the most used code first, so that a
#: run cut short by `--time-limit` has covered what matters most.
PRIORITY = (
    "lada.tasks.answers",
    "lada.method.rewards",
    "lada.method.filter",
    "lada.method.selection",
    "lada.method.pairs",
    "lada.method.contrastive",
    "lada.method.features",
    "lada.method.networks",
    "lada.method.rho_loss",
    "lada.method.receiver",
    "lada.method.plugin",
    "lada.method.config",
    "lada.method",
)

#: mutmut 3.8.1's verdicts by exit code (`mutmut.stats.status_by_exit_code`); anything else is
#: 'suspicious'. A timeout counts as killed: the tests noticed the mutant (it never finished).
STATUS_BY_EXIT_CODE: dict[int | None, str] = {
    1: "killed",
    3: "killed",  # an internal pytest error is a kill too
    0: "survived",
    5: "no tests",
    2: "check was interrupted by user",
    None: "not checked",
    33: "no tests",
    34: "skipped",
    35: "suspicious",
    36: "timeout",
    37: "caught by type check",
    -24: "timeout",
    24: "timeout",
    152: "timeout",
    255: "timeout",
    -11: "segfault",
    -9: "segfault",
}
KILLED = ("killed", "timeout", "caught by type check")
ALIVE = ("survived", "no tests", "suspicious", "segfault")


def _each(reason: str, module: str, *mutants: str) -> dict[str, str]:
    return {f"{module}.{mutant}": reason for mutant in mutants}


_F = "xǁLearnabilityFilterǁ"
_P = "xǁLadaPluginǁ"
_CPU_ONLY = "a device move, a no-op on the CPU the tests run on (a GPU run would see it)"

#: Surviving mutants that no test should kill, by name pattern (fnmatch), with the reason.
#: Anything alive and not matched here is 'unexplained': a test is missing. A function that
#: changes gets new mutant numbers: re-read its survivors before trusting these entries.
ACCEPTED: dict[str, str] = {
    # ---------------------------------------------------------------- lada.tasks.answers
    **_each(
        "equivalent: choices None and () are both empty, and only their truth is read",
        "lada.tasks.answers",
        "x_check_answer__mutmut_33",
        "x_check_answer__mutmut_40",
    ),
    **_each(
        "equivalent: OPTION_LETTERS holds each letter once, so rindex finds what index finds",
        "lada.tasks.answers",
        "x__option_letter__mutmut_15",
    ),
    **_each(
        "equivalent: both sides of every comparison get the same separator",
        "lada.tasks.answers",
        "x__text_key__mutmut_3",
    ),
    **_each(
        "equivalent: a 2-character '$$' holds nothing, and is kept either way",
        "lada.tasks.answers",
        "x__strip_decoration__mutmut_23",
        "x__strip_decoration__mutmut_24",
    ),
    **_each(
        "'X' added to a set of stripped characters: differs only for text made of capital X's "
        "and punctuation around the part that matters (no answer looks like that)",
        "lada.tasks.answers",
        "x__option_letter__mutmut_8",
        "x__strip_decoration__mutmut_15",
    ),
    # ---------------------------------------------------------------- lada.method.rewards
    **_each(
        "equivalent for the float columns callers pass (a float64 cast changes only the "
        "dtype of integer or float32 input, not a value)",
        "lada.method.rewards",
        "x__as_vector__mutmut_3",
        "x__as_vector__mutmut_5",
        "x_sigmoid__mutmut_3",
        "x_sigmoid__mutmut_5",
        "x_finite_rows__mutmut_3",
        "x_finite_rows__mutmut_5",
    ),
    # ---------------------------------------------------------------- lada.method.filter
    **_each(
        "equivalent: in 'random' mode explore=None resolves to True",
        "lada.method.filter",
        f"{_F}_lada_count__mutmut_9",
        f"{_F}_lada_count__mutmut_11",
    ),
    **_each(
        "equivalent: torch >= 2.6 loads with weights_only=True by default",
        "lada.method.filter",
        f"{_F}load__mutmut_6",
        f"{_F}load__mutmut_9",
    ),
    **_each(
        "equivalent: load_state_dict sets the name from the state right after",
        "lada.method.filter",
        f"{_F}load__mutmut_16",
        f"{_F}load__mutmut_19",
    ),
    **_each(
        "equivalent: f1, f2 and their optimizers are always set (or cleared) together",
        "lada.method.filter",
        f"{_F}load_state_dict__mutmut_48",
        f"{_F}update__mutmut_41",
        f"{_F}_networks__mutmut_1",
    ),
    **_each(
        "equivalent: the first update replaces an empty memory (_append), and np.zeros is "
        "float64 by default",
        "lada.method.filter",
        *(f"{_F}__init____mutmut_{n}" for n in (22, 24, 26, 29, 31, 35, 37, 39, 42, 44)),
    ),
    **_each(
        "equivalent: float('NAN') is a NaN too",
        "lada.method.filter",
        f"{_F}update__mutmut_33",
        f"{_F}update__mutmut_36",
    ),
    **_each(
        "float32 rounding only: a target or memory kept in float64 meets networks that train "
        "in float32 (values agree to ~1e-7)",
        "lada.method.filter",
        *(f"{_F}update__mutmut_{n}" for n in (58, 61, 70, 78, 96, 99, 114, 117)),
    ),
    **_each(
        "equivalent: every LadaConfig field is JSON-native, so both dump modes agree",
        "lada.method.filter",
        f"{_F}state_dict__mutmut_8",
        f"{_F}state_dict__mutmut_9",
        f"{_F}state_dict__mutmut_10",
    ),
    **_each(
        "equivalent: bit_generator.state builds a new dict of plain ints on every read and "
        "copies what it is set to",
        "lada.method.filter",
        f"{_F}state_dict__mutmut_50",
        f"{_F}load_state_dict__mutmut_80",
    ),
    **_each(
        "equivalent: a dtype cast the next step repeats (standardize and astype(None) give "
        "float64; rewards meet float64 memory; networks read float32 tensors; featurize "
        "returns float32 already)",
        "lada.method.filter",
        f"{_F}_round1__mutmut_35",
        f"{_F}_round1__mutmut_37",
        f"{_F}_round1__mutmut_51",
        f"{_F}update__mutmut_5",
        f"{_F}update__mutmut_7",
        f"{_F}_check_features__mutmut_3",
        f"{_F}_check_features__mutmut_5",
        f"{_F}_to_tensor__mutmut_6",
        f"{_F}_to_tensor__mutmut_8",
    ),
    **_each(
        "equivalent: np.arange's default integer is int64 on the 64-bit platforms supported",
        "lada.method.filter",
        f"{_F}choose__mutmut_30",
        f"{_F}choose__mutmut_32",
    ),
    **_each(
        "message wording: the hint after the count and the filter's name",
        "lada.method.filter",
        f"{_F}update__mutmut_20",
        f"{_F}update__mutmut_21",
        f"{_F}update__mutmut_22",
    ),
    **_each(
        "unreachable: _check_features refuses a different width before this check runs",
        "lada.method.filter",
        f"{_F}_ensure_networks__mutmut_3",
    ),
    **_each(
        _CPU_ONLY,
        "lada.method.filter",
        f"{_F}load__mutmut_5",
        f"{_F}load__mutmut_8",
        f"{_F}_ensure_networks__mutmut_5",
        f"{_F}_ensure_networks__mutmut_29",
        f"{_F}_ensure_networks__mutmut_30",
        f"{_F}_to_tensor__mutmut_2",
        f"{_F}_to_tensor__mutmut_4",
        *(f"{_F}update__mutmut_{n}" for n in (59, 62, 97, 100, 115, 118)),
    ),
    # ---------------------------------------------------------------- lada.method.contrastive
    **_each(
        "a Protocol's signature: never executed (receivers bring their own score_paths)",
        "lada.method.contrastive",
        "xǁPathScorerǁscore_paths__mutmut_1",
    ),
    **_each(
        "differs only when a batch's positives hold a single token in all (one empty path): "
        "the clamp guards a division by zero",
        "lada.method.contrastive",
        "x_distillation_loss__mutmut_39",
    ),
    **_each(
        "float32 rounding only (and a device move, a no-op on CPU): without the cast the "
        "plug-in's float64 references make the margin and L_CD float64, the same values",
        "lada.method.contrastive",
        *(f"x_distillation_loss__mutmut_{n}" for n in (56, 57, 58, 59, 61, 62, 63, 64)),
    ),
    # ---------------------------------------------------------------- lada.method.features
    **_each(
        "equivalent: a term that is the same for every centre of a point ((points * 2).sum, "
        "points**3) does not move the argmin",
        "lada.method.features",
        "x__nearest__mutmut_5",
        "x__nearest__mutmut_6",
    ),
    **_each(
        "equivalent for the float arrays callers pass (cluster_centers_ is float64 already; "
        "a float64 cast changes only the dtype of integer input, not a value)",
        "lada.method.features",
        "x__check_matrix__mutmut_3",
        "x__check_matrix__mutmut_5",
        "x__optional_array__mutmut_5",
        "x__optional_array__mutmut_7",
        "xǁFeatureSpaceǁfit__mutmut_35",
    ),
    **_each(
        "equivalent: mean and scale are always set (or cleared) together",
        "lada.method.features",
        "xǁFeatureSpaceǁstandardize__mutmut_1",
    ),
    # ---------------------------------------------------------------- lada.method.pairs
    **_each(
        "equivalent: zip's strict guards lengths that build_pairs checked just before",
        "lada.method.pairs",
        "x_build_pairs__mutmut_12",
        "x_build_pairs__mutmut_16",
        "x_build_pairs__mutmut_17",
    ),
    # ---------------------------------------------------------------- lada.method.selection
    **_each(
        "equivalent: replace=None is falsy like False; zip's strict only guards lengths that "
        "are equal by construction",
        "lada.method.selection",
        "x_random_select__mutmut_9",
        "x_fraction_per_cluster_select__mutmut_27",
        "x_fraction_per_cluster_select__mutmut_37",
        "x_fraction_per_cluster_select__mutmut_40",
        "x_fraction_per_cluster_select__mutmut_41",
    ),
    **_each(
        "equivalent: drawing 0 items takes no randomness and adds an empty array",
        "lada.method.selection",
        "x_fraction_per_cluster_select__mutmut_42",
    ),
    **_each(
        "equivalent for the inputs callers pass (a cast of integer counts, boolean masks or "
        "float scores to what they already are; quotas are read through int())",
        "lada.method.selection",
        "x_fraction_per_cluster_select__mutmut_13",
        "x_proportional_quota__mutmut_3",
        "x_proportional_quota__mutmut_5",
        "x_subset_select__mutmut_5",
        "x_subset_select__mutmut_7",
        "x_top_count__mutmut_3",
        "x_top_count__mutmut_5",
        "x_threshold_select__mutmut_3",
        "x_threshold_select__mutmut_5",
        "x_scores_from_outputs__mutmut_3",
        "x_scores_from_outputs__mutmut_5",
        "x_scores_from_outputs__mutmut_11",
        "x_scores_from_outputs__mutmut_13",
    ),
    **_each(
        "equivalent: once `count` items are taken, one more pass adds an empty slice",
        "lada.method.selection",
        "x_nearest_clusters_select__mutmut_22",
    ),
    **_each(
        "equivalent: slicing with budget None (passing[:None]) keeps everything",
        "lada.method.selection",
        "x_threshold_select__mutmut_16",
    ),
    **_each(
        "equivalent: numpy reads a sort kind by its first letter, so 'STABLE' is 'stable'",
        "lada.method.selection",
        "x_proportional_quota__mutmut_27",
        "x_top_count__mutmut_22",
        "x_threshold_select__mutmut_13",
        "x_nearest_clusters_select__mutmut_21",
        "x_nearest_clusters_select__mutmut_33",
    ),
    **_each(
        "not part of the contract: the order among exact ties (equal remainders, equally "
        "distant clusters or points); any order gives a valid split or round-1 pick",
        "lada.method.selection",
        "x_proportional_quota__mutmut_22",
        "x_proportional_quota__mutmut_24",
        "x_nearest_clusters_select__mutmut_17",
        "x_nearest_clusters_select__mutmut_19",
        "x_nearest_clusters_select__mutmut_29",
        "x_nearest_clusters_select__mutmut_31",
    ),
    # ---------------------------------------------------------------- lada.method.networks
    **_each(_CPU_ONLY, "lada.method.networks", "x_fit_regressor__mutmut_5"),
    **_each(
        "equivalent: every parameter gets a gradient from each backward, so zeroing the old "
        "ones in place (set_to_none False, or None, which is falsy) gives the same step",
        "lada.method.networks",
        "x_fit_regressor__mutmut_31",
        "x_fit_regressor__mutmut_32",
    ),
    **_each(
        "equivalent: the head's output is [N, 1], where squeeze(1) and squeeze(-1) are one axis",
        "lada.method.networks",
        "xǁRewardMLPǁforward__mutmut_5",
    ),
    # ---------------------------------------------------------------- lada.method.receiver
    **_each(
        "a Protocol's signature: never executed (receivers bring their own methods)",
        "lada.method.receiver",
        "xǁReceiverǁ*",
    ),
    # ---------------------------------------------------------------- lada.method.rho_loss
    **_each(
        "equivalent for the float arrays callers pass (path losses are float64 already; a "
        "float64 cast changes only the dtype of other input, not a value)",
        "lada.method.rho_loss",
        *(f"x_rho_scores__mutmut_{n}" for n in (3, 5, 8, 10)),
    ),
    **_each(
        "equivalent: with count == len(items) the sorted draw without replacement is every "
        "item in order, which is what returning them gives",
        "lada.method.rho_loss",
        "x_holdout_items__mutmut_18",
    ),
    **_each(
        "equivalent: replace=None is falsy like False",
        "lada.method.rho_loss",
        "x_holdout_items__mutmut_23",
    ),
    **_each(
        "the progress bar only (its label and whether it shows)",
        "lada.method.rho_loss",
        *(f"xǁIrreducibleLossModelǁtrain__mutmut_{n}" for n in (19, 20, 28, 29, 32)),
    ),
    **_each(
        "observable only when the irreducible-loss model's training meets non-finite losses: "
        "their count then misses the round log, or the skip limit is the default instead of "
        "the configured one (the guard itself is tested in tests/test_guards.py)",
        "lada.method.rho_loss",
        *(f"xǁIrreducibleLossModelǁtrain__mutmut_{n}" for n in (22, 30, 31)),
    ),
    **_each(
        "unreachable: rho_il_epochs >= 1 (validated) and the holdout holds at least one item, "
        "so the last epoch always has a loss and the 'nan' branch never runs",
        "lada.method.rho_loss",
        *(f"xǁIrreducibleLossModelǁtrain__mutmut_{n}" for n in (41, 44, 45, 46)),
    ),
    # ---------------------------------------------------------------- lada.method.plugin
    **_each(
        "equivalent: float('NAN') is a NaN too",
        "lada.method.plugin",
        "x__finite_mean__mutmut_13",
        "xǁRoundRewardsǁsummary__mutmut_7",
        *(f"{_P}observe__mutmut_{n}" for n in (29, 32, 65, 70)),
    ),
    **_each(
        "equivalent for the arrays callers pass (path losses are float64 already; a float64 "
        "cast changes only the dtype of other input, not a value)",
        "lada.method.plugin",
        "x__finite_mean__mutmut_3",
        "x__finite_mean__mutmut_5",
    ),
    **_each(
        "equivalent: a centroid given as an array is cast to float64 again where it is read "
        "(local_centroid, and the filter's round-1 selection)",
        "lada.method.plugin",
        f"{_P}_centroid__mutmut_3",
        f"{_P}_centroid__mutmut_5",
    ),
    **_each(
        "equivalent: a dtype the value has already (np.asarray of Python ints is int64, "
        "torch.as_tensor keeps int64 and the float64 of select_logprobs, numpy stores Python "
        "bools as bool; offers are never empty there)",
        "lada.method.plugin",
        *(f"xǁDistillBatchSetǁbatches__mutmut_{n}" for n in (20, 22, 26, 28)),
        *(f"{_P}prepare__mutmut_{n}" for n in (62, 64, 66, 68)),
        f"{_P}_oracle_choice__mutmut_8",
        f"{_P}_oracle_choice__mutmut_10",
    ),
    **_each(
        "equivalent: zip's strict guards lengths that are equal by construction (one mask "
        "entry per pair)",
        "lada.method.plugin",
        *(f"{_P}observe__mutmut_{n}" for n in (153, 156, 157)),
    ),
    **_each(
        "equivalent: with `steps`, a further pass begun once that many steps were taken "
        "returns at its first batch with the same history",
        "lada.method.plugin",
        *(f"{_P}fit__mutmut_{n}" for n in (17, 71, 74)),
    ),
    **_each(
        "equivalent: the top-k slice and random_select both cap k at the offer already",
        "lada.method.plugin",
        f"{_P}_empty_fallback__mutmut_24",
    ),
    **_each(
        "equivalent: numpy reads a sort kind by its first letter, so 'STABLE' is 'stable'",
        "lada.method.plugin",
        f"{_P}_empty_fallback__mutmut_38",
    ),
    **_each(
        "equivalent: policy_negative is read only by kinds that score the negatives again "
        "('margin'); for the others an empty slice stands where None was",
        "lada.method.plugin",
        f"{_P}_measure_after__mutmut_44",
    ),
    **_each(
        "equivalent: every LadaConfig field is JSON-native, so both dump modes agree",
        "lada.method.plugin",
        *(f"{_P}state_dict__mutmut_{n}" for n in (5, 6, 7)),
    ),
    **_each(
        "equivalent: torch >= 2.6 loads with weights_only=True by default",
        "lada.method.plugin",
        f"{_P}load__mutmut_6",
        f"{_P}load__mutmut_9",
    ),
    **_each(
        "map_location='cpu' matters only for a file saved from GPU tensors; the tests save on "
        "the CPU they run on",
        "lada.method.plugin",
        f"{_P}load__mutmut_5",
        f"{_P}load__mutmut_8",
    ),
    **_each(
        "unreachable: LadaConfig refuses selection_mode 'rho_loss' without match_counts or a "
        "budget, so the number to take is never None",
        "lada.method.plugin",
        f"{_P}_rho_choice__mutmut_7",
    ),
    **_each(
        "observable only when the irreducible-loss model's training meets non-finite losses "
        "(the log then misses their count), or in its progress label (off) and in a message "
        "that the plug-in's own check for local items pre-empts",
        "lada.method.plugin",
        f"{_P}_rho_choice__mutmut_12",
        f"{_P}select__mutmut_102",
        *(f"{_P}_irreducible_model__mutmut_{n}" for n in (19, 20, 25)),
    ),
}


# ---------------------------------------------------------------------------------- scope
@dataclass(frozen=True)
class Scope:
    """What [tool.mutmut] mutates and which tests judge the mutants."""

    only_mutate: tuple[str, ...]
    tests: tuple[str, ...]
    modules: dict[str, str]  # module -> source path (relative to the root)


def module_of_path(path: str) -> str:
    """`src/lada/method/filter.py` -> `lada.method.filter` (a package's `__init__` -> package)."""
    parts = list(Path(path).with_suffix("").parts)
    if parts[0] == "src":
        parts = parts[1:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def module_of_mutant(name: str) -> str:
    """`lada.method.filter.xǁLearnabilityFilterǁselect__mutmut_3` -> `lada.method.filter`."""
    parts = name.split(".")
    for i in range(len(parts) - 1, -1, -1):
        if parts[i].startswith(("x_", "xǁ")):
            return ".".join(parts[:i])
    return name.rsplit(".", 1)[0]


def read_scope(root: Path = ROOT) -> Scope:
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["mutmut"]
    only = tuple(config["only_mutate"])
    files = []
    for source in config.get("source_paths", ["src"]):
        base = root / source
        candidates = [base] if base.is_file() else sorted(base.rglob("*.py"))
        for path in candidates:
            relative = str(path.relative_to(root))
            if any(fnmatch.fnmatch(relative, pattern) for pattern in only):
                files.append(relative)
    return Scope(
        only_mutate=only,
        tests=tuple(config.get("pytest_add_cli_args_test_selection", [])),
        modules={module_of_path(f): f for f in files},
    )


def chosen_modules(scope: Scope, paths: list[str] | None, root: Path = ROOT) -> list[str]:
    """The in-scope modules under `paths` (files or folders), in `paths` order, else PRIORITY."""
    if not paths:
        rank = {m: i for i, m in enumerate(PRIORITY)}
        return sorted(scope.modules, key=lambda m: (rank.get(m, len(rank)), m))
    chosen: list[str] = []
    for given in paths:
        target = (root / given).resolve()
        hits = [
            module
            for module, source in scope.modules.items()
            if (root / source).resolve() == target or target in (root / source).resolve().parents
        ]
        if not hits:
            raise SystemExit(f"--paths {given}: nothing under it is mutated ({scope.only_mutate})")
        chosen += [m for m in sorted(hits) if m not in chosen]
    return chosen


# --------------------------------------------------------------------------------- verdicts
def verdicts(source: str, root: Path = ROOT) -> dict[str, int | None]:
    """Mutant name -> mutmut's exit code (None: not checked yet) from `mutants/<source>.meta`;
    empty before mutmut generated the module's mutants."""
    meta = root / "mutants" / f"{source}.meta"
    if not meta.exists():
        return {}
    return dict(json.loads(meta.read_text())["exit_code_by_key"])


def status_of(exit_code: int | None) -> str:
    return STATUS_BY_EXIT_CODE.get(exit_code, "suspicious")


def accepted_reason(name: str, accepted: dict[str, str] = ACCEPTED) -> str | None:
    for pattern, reason in accepted.items():
        if fnmatch.fnmatchcase(name, pattern):
            return reason
    return None


def module_row(codes: dict[str, int | None], accepted: dict[str, str] = ACCEPTED) -> dict[str, Any]:
    """Counts of one module's verdicts and its killed share (None while nothing is checked)."""
    statuses = Counter(status_of(code) for code in codes.values())
    checked = sum(n for s, n in statuses.items() if s not in ("not checked", "skipped"))
    killed = sum(statuses[s] for s in KILLED)
    alive = [n for n, code in codes.items() if status_of(code) in ALIVE]
    n_accepted = sum(accepted_reason(n, accepted) is not None for n in alive)
    return {
        "mutants": len(codes),
        "killed": statuses["killed"] + statuses["caught by type check"],
        "survived": statuses["survived"],
        "timeout": statuses["timeout"],
        "no_tests": statuses["no tests"],
        "other": statuses["suspicious"] + statuses["segfault"],
        "not_checked": statuses["not checked"] + statuses["check was interrupted by user"],
        "accepted": n_accepted,
        "killed_share": killed / checked if checked else None,
        # The share once accepted survivors are set aside: what the tests catch of what they can.
        "killed_share_of_killable": (
            killed / (checked - n_accepted) if checked - n_accepted > 0 else None
        ),
    }


def total_row(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    keys = ("mutants", "killed", "survived", "timeout", "no_tests", "other", "not_checked")
    total: dict[str, Any] = {k: sum(r[k] for r in rows.values()) for k in (*keys, "accepted")}
    checked = total["mutants"] - total["not_checked"]
    caught = total["killed"] + total["timeout"]
    total["killed_share"] = caught / checked if checked else None
    killable = checked - total["accepted"]
    total["killed_share_of_killable"] = caught / killable if killable > 0 else None
    return total


def short_diff(diff: str) -> str:
    """Only the changed lines of a unified diff (its headers and context dropped)."""
    lines = diff.splitlines()
    return "\n".join(
        line.rstrip() for line in lines if line[:1] in "+-" and not line.startswith(("+++", "---"))
    )


# ---------------------------------------------------------------------------------- running
@dataclass
class ModuleRun:
    module: str
    submitted: int
    seconds: float = 0.0
    exit_code: int | None = None
    stopped: bool = False  # cut short by --time-limit


def mutmut_command(names: list[str], max_children: int, nice: int) -> list[str]:
    command = [
        sys.executable,
        "-c",
        "import sys; from mutmut.__main__ import cli; sys.exit(cli())",
        "run",
        "--max-children",
        str(max_children),
        *names,
    ]
    return ["nice", "-n", str(nice), *command] if nice else command


def run_module(
    module: str,
    source: str,
    args: argparse.Namespace,
    deadline: float | None,
    console: Any,
) -> ModuleRun:
    """One `mutmut run` over the module's mutants that have no verdict yet."""
    codes = verdicts(source)

    # mutmut keeps a verdict until the function changes; survivors meet new tests only when
    # named again (--retest-survivors, which skips the accepted ones).
    def wanted(name: str, code: int | None) -> bool:
        if code is None:
            return True
        retest = args.retest_survivors and status_of(code) in ALIVE
        return retest and accepted_reason(name) is None

    names = [n for n, code in codes.items() if wanted(n, code)]
    if not codes:  # no mutant exists before the first run: a pattern that mutmut expands
        names = [f"{module}.*"]
    run = ModuleRun(module, len(names) if codes else -1)
    if not names:
        return run
    log_path = ROOT / "mutants" / "mutmut-run.log"
    log_path.parent.mkdir(exist_ok=True)
    # The plugin reorders tests and freezes the heap, nothing else (see mutation_plugin.py);
    # mutmut puts mutants/ on the path of every process it starts.
    shutil.copyfile(PLUGIN, ROOT / "mutants" / PLUGIN.name)
    environment = {
        **os.environ,
        "PYTEST_PLUGINS": PLUGIN.stem,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
    }
    shown = "all" if run.submitted < 0 else str(run.submitted)
    console.print(f"{module}: running {shown} mutants (mutmut's output: {log_path.name})")
    started = time.perf_counter()
    with log_path.open("a") as log:
        log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {module}\n")
        log.flush()
        process = subprocess.Popen(
            mutmut_command(names, args.max_children, args.nice),
            cwd=ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches mutmut through us, not twice
        )
        stopper = None
        if deadline is not None:
            # mutmut stops on SIGINT (KeyboardInterrupt) and keeps every verdict it has.
            def stop() -> None:
                run.stopped = True
                process.send_signal(signal.SIGINT)

            stopper = threading.Timer(max(0.0, deadline - time.monotonic()), stop)
            stopper.start()
        try:
            run.exit_code = process.wait()
        except KeyboardInterrupt:
            process.send_signal(signal.SIGINT)
            run.exit_code = process.wait()
            raise
        finally:
            if stopper is not None:
                stopper.cancel()
    run.seconds = time.perf_counter() - started
    if run.exit_code not in (0, None) and not run.stopped:
        tail = log_path.read_text(errors="replace")[-2000:]
        console.print(
            f"[red]mutmut exited with {run.exit_code}[/]; end of its log:\n{escape(tail)}"
        )
    return run


def diffs_of(names: list[str], sources: dict[str, str]) -> dict[str, str]:
    """The changed lines of each named mutant, from mutmut's own diff (needs mutmut)."""
    if not names:
        return {}
    request = [[name, sources[module_of_mutant(name)]] for name in names]
    code = (
        "import json, sys\n"
        "from mutmut.mutation.diff_apply import get_diff_for_mutant\n"
        "out = {}\n"
        "for name, path in json.load(sys.stdin):\n"
        "    try:\n"
        "        out[name] = get_diff_for_mutant(name, path=path)\n"
        "    except Exception as error:\n"
        "        out[name] = f'(no diff: {error})'\n"
        "json.dump(out, sys.stdout)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        input=json.dumps(request),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return {name: f"(no diff: {done.stderr.strip()[-300:]})" for name in names}
    return {name: short_diff(diff) for name, diff in json.loads(done.stdout).items()}


def mutmut_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("mutmut")
    except Exception:
        return None


# ----------------------------------------------------------------------------------- report
def collect(scope: Scope, modules: list[str], with_diffs: bool) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    alive: list[dict[str, Any]] = []
    for module in modules:
        codes = verdicts(scope.modules[module])
        rows[module] = module_row(codes)
        for name, code in sorted(codes.items(), key=lambda kv: _natural(kv[0])):
            if status_of(code) in ALIVE:
                alive.append(
                    {
                        "name": name,
                        "module": module,
                        "status": status_of(code),
                        "accepted": accepted_reason(name),
                    }
                )
    if with_diffs:
        diffs = diffs_of([a["name"] for a in alive], scope.modules)
        for entry in alive:
            entry["diff"] = diffs.get(entry["name"], "")
    return {
        "modules": rows,
        "total": total_row(rows),
        "survivors": alive,
        "unexplained": [a["name"] for a in alive if a["accepted"] is None],
    }


def _natural(name: str) -> tuple[str, int]:
    stem, _, number = name.rpartition("__mutmut_")
    return (stem, int(number)) if number.isdigit() else (name, 0)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def report(result: dict[str, Any], scope: Scope, console: Any) -> None:
    columns = [
        "module (src/)",
        "mutants",
        "killed",
        "survived",
        "timeout",
        "no tests",
        "unchecked",
        "killed %",
        "accepted",
        "killed % of rest",
    ]

    def cells(name: str, row: dict[str, Any]) -> list[Any]:
        return [
            name,
            row["mutants"],
            row["killed"],
            row["survived"],
            row["timeout"],
            row["no_tests"],
            row["not_checked"],
            _share(row["killed_share"]),
            row["accepted"],
            _share(row["killed_share_of_killable"]),
        ]

    rows = [cells(scope.modules[m].removeprefix("src/"), r) for m, r in result["modules"].items()]
    rows.append(cells("total", result["total"]))
    print_table(
        console,
        "Mutants killed by the unit tests (mutmut; killed = (killed + timeout) / checked, "
        "of rest = after setting accepted survivors aside)",
        columns,
        rows,
    )
    unexplained = [s for s in result["survivors"] if s["accepted"] is None]
    if unexplained:
        print_table(
            console,
            f"Unexplained survivors ({len(unexplained)}): each wants a test",
            ["mutant", "status", "change"],
            [
                [escape(s["name"]), s["status"], escape(s.get("diff", "").replace("\n", " | "))]
                for s in unexplained
            ],
        )


# ------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--paths",
        nargs="+",
        help="source files or folders inside [tool.mutmut]'s scope (default: all of it)",
    )
    parser.add_argument("--report-only", action="store_true", help="run nothing, only report")
    parser.add_argument("--max-children", type=int, default=1, help="mutmut workers (default 1)")
    parser.add_argument("--nice", type=int, default=10, help="niceness added for mutmut (0: none)")
    parser.add_argument(
        "--time-limit", type=float, help="minutes; then mutmut stops and the run can resume"
    )
    parser.add_argument(
        "--retest-survivors",
        action="store_true",
        help="run the tests again on the survivors that are not accepted",
    )
    parser.add_argument("--no-diffs", action="store_true", help="leave survivors' diffs out")
    parser.add_argument("--out", type=Path, help="JSON output path")
    args = parser.parse_args()
    started = time.perf_counter()
    console = make_console()
    scope = read_scope()
    modules = chosen_modules(scope, args.paths)
    version = mutmut_version()
    if not args.report_only and version is None:
        raise SystemExit(f"mutmut is not installed: pip install mutmut=={MUTMUT_VERSION}")
    if version is not None and version != MUTMUT_VERSION:
        console.print(f"[yellow]mutmut {version}[/]: this script reads {MUTMUT_VERSION}'s state")
    deadline = None if args.time_limit is None else time.monotonic() + 60 * args.time_limit
    runs: list[ModuleRun] = []
    if not args.report_only:
        for module in modules:
            if deadline is not None and time.monotonic() >= deadline:
                console.print(f"{module}: not run (--time-limit reached)")
                continue
            run = run_module(module, scope.modules[module], args, deadline, console)
            runs.append(run)
            if run.exit_code is not None:
                row = module_row(verdicts(scope.modules[module]))
                console.print(
                    f"{module}: {run.seconds:.0f} s, killed share {_share(row['killed_share'])}"
                    f" ({row['not_checked']} not checked)"
                )
    result = collect(scope, modules, with_diffs=not args.no_diffs and version is not None)
    report(result, scope, console)
    payload = {
        "mutmut": version,
        "scope": {"only_mutate": list(scope.only_mutate), "tests": list(scope.tests)},
        "paths": [scope.modules[m] for m in modules],
        "runs": [
            {
                "module": r.module,
                "mutants_submitted": r.submitted,
                "seconds": round(r.seconds, 1),
                "mutmut_exit_code": r.exit_code,
                "stopped_by_time_limit": r.stopped,
            }
            for r in runs
            if r.exit_code is not None
        ],
        **result,
        "accepted_patterns": ACCEPTED,
    }
    path = write_result("mutation", payload, args.out or RESULTS / "mutation.json", started)
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
