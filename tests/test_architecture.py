"""The layers hold: no module imports a layer above its own, and no import of a lada module sits
inside a function unless it is listed below with the reason (start-up time of the CLI or of a
heavy optional library, never an import circle)."""

from __future__ import annotations

import ast
from pathlib import Path

import lada

LAYERS = ("tasks", "models", "method", "hosts", "federation", "experiments", "apps")
PACKAGE = Path(lada.__file__).parent

#: (module file relative to the package, imported module): why it is imported on first use.
DEFERRED = {
    ("apps/client_front.py", "lada.apps.client_app"): "torch only for a node without a worker",
    ("apps/client_worker.py", "lada.apps.client_app"): "the front imports the wire, not torch",
    ("apps/run_cli.py", "lada.apps.run"): "`lada run --help` must not import the model stack",
    ("apps/run_cli.py", "lada.experiments.checkpoint"): "same: torch only when a run starts",
    ("apps/run_cli.py", "lada.experiments.runner"): "same",
    ("apps/run_cli.py", "lada.experiments.compare"): "same",
    ("experiments/compare.py", "lada.experiments.plots"): "matplotlib only when plotting",
    ("experiments/data_cli.py", "lada.tasks.gym_suite"): "reasoning-gym only for suites",
    ("experiments/pretrain_cli.py", "lada.models.pretrain"): "`lada pretrain --help` stays fast",
    ("experiments/setup.py", "lada.tasks.gym_suite"): "reasoning-gym only for suites",
    ("experiments/setup.py", "lada.tasks.loaders"): "datasets only for data files",
    ("federation/deploy_cli.py", "lada.federation.certs"): "cryptography only when deploying",
    ("models/presets.py", "lada.tasks.gym_suite"): "reasoning-gym only to build a vocabulary",
}


def _imports(tree: ast.AST) -> list[tuple[str, bool]]:
    """(imported lada module, whether the import sits inside a function) for every import."""
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.ImportFrom) and (child.module or "").startswith("lada."):
                found.append((child.module or "", nested))
            elif isinstance(child, ast.Import):
                found.extend((a.name, nested) for a in child.names if a.name.startswith("lada."))
            visit(child, inner)

    visit(tree, False)
    return found


def _modules() -> list[tuple[str, str, ast.AST]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        layer = relative.split("/")[0]
        if layer in LAYERS:
            out.append((relative, layer, ast.parse(path.read_text())))
    return out


def test_every_layer_has_modules() -> None:
    assert {layer for _, layer, _ in _modules()} == set(LAYERS)


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = []
    for relative, layer, tree in _modules():
        for module, _ in _imports(tree):
            target = module.split(".")[1]
            if target in LAYERS and LAYERS.index(target) > LAYERS.index(layer):
                upward.append(f"{relative} imports {module}")
    assert upward == []


def test_imports_inside_functions_are_only_the_listed_deferred_ones() -> None:
    nested = {
        (relative, module)
        for relative, _, tree in _modules()
        for module, inside in _imports(tree)
        if inside
    }
    assert nested - set(DEFERRED) == set(), "an import inside a function: move it to the top"
    assert set(DEFERRED) - nested == set(), "a listed deferred import no longer exists"
