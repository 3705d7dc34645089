"""Imports run one way, features → models → pipelines and serving, with no circle.

Every import counts: at the top of a module, inside a function and under ``TYPE_CHECKING``. The
graph is read from the source with :mod:`ast`, so that an import hidden in a function body cannot
slip an arrow upward. Serving never imports pipelines, so that a Bento ships without them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

from tests.threads import in_fresh_thread

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"features": 0, "models": 1, "pipelines": 2, "serving": 2}
# The command line starts the server and builds the Bento: the one place the top layers meet.
MAY_IMPORT_SERVING = "pipelines.cli"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def first_party(name: str) -> str | None:
    """The module of the project that ``name`` (``models.names``, ``models.names.PROMOTION_METRIC``) lies in."""
    parts = name.split(".")
    if parts[0] not in LAYERS:
        return None
    for end in range(len(parts), 0, -1):
        candidate = ROOT.joinpath(*parts[:end])
        if candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file():
            return ".".join(parts[:end])
    return None


def imports_in(source: str, package: str) -> set[str]:
    """Every first-party module ``source`` (a module of ``package``) imports, wherever the statement stands."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from models import names`` imports the module models.names; ``from models.names import X``, models.names.
            names = [
                f"{base}.{alias.name}" if first_party(f"{base}.{alias.name}") == f"{base}.{alias.name}" else base
                for alias in node.names
            ]
        else:
            continue
        found |= {module for module in map(first_party, names) if module is not None}
    return found


def imports_of(path: Path) -> set[str]:
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    return imports_in(path.read_text(encoding="utf-8"), package) - {module_name(path)}


def graph() -> dict[str, set[str]]:
    return in_fresh_thread(_graph)  # tests/threads.py says why


def _graph() -> dict[str, set[str]]:
    return {module_name(path): imports_of(path) for layer in LAYERS for path in sorted((ROOT / layer).rglob("*.py"))}


def test_imports_are_found_wherever_they_stand():
    source = """
from typing import TYPE_CHECKING
import numpy
from features.schema import FEATURES
from models import names
if TYPE_CHECKING:
    from pipelines.steps import Cohorts
def later():
    import serving.schemas
    from .registry import load_model
"""
    assert imports_in(source, "models") == {
        "features.schema",
        "models.names",
        "pipelines.steps",
        "serving.schemas",
        "models.registry",
    }


def test_the_graph_is_read_from_every_module():
    edges = graph()
    assert len(edges) == sum(1 for layer in LAYERS for _ in (ROOT / layer).rglob("*.py")) > 50
    assert "features.schema" in edges["models.scoring"]


def test_imports_run_from_features_to_models_to_pipelines_and_serving():
    upward = []
    for module, targets in graph().items():
        source = module.split(".")[0]
        for target in targets:
            layer = target.split(".")[0]
            allowed = (
                LAYERS[layer] < LAYERS[source]
                or layer == source
                or (
                    layer == "serving" and (module == MAY_IMPORT_SERVING or module.startswith(MAY_IMPORT_SERVING + "."))
                )
            )
            if not allowed:
                upward.append(f"{module} imports {target}")
    assert upward == []


def test_no_module_imports_itself_round_a_circle():  # noqa: C901 - a depth-first search written out in the test
    edges = graph()
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(module: str) -> None:  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in edges.get(module, ()):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in edges:
        if module not in index:
            visit(module)
    assert circles == []


def test_the_bento_ships_the_packages_serving_needs_and_not_pipelines():
    include = yaml.safe_load((ROOT / "bentofile.yaml").read_text(encoding="utf-8"))["include"]
    shipped = {pattern.split("/")[0] for pattern in include}
    edges, needed, seen = graph(), ["serving.service"], set()
    while needed:
        module = needed.pop()
        if module not in seen:
            seen.add(module)
            needed += edges[module]
    assert {module.split(".")[0] for module in seen} <= shipped
    assert "pipelines" not in shipped
