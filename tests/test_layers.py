"""Imports point one way. Each module of g2l sits in a layer and imports only from its own layer or
the layers below it, and no modules import each other in a circle, so the package reads bottom-up
and a change to a lower layer never needs a higher one to make sense (docs: STYLE.md's layout).
Imports inside functions count: they are dependencies too."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "g2l"

# Top first. A module belongs to the longest prefix listed; every module must belong to one.
LAYERS = [
    ["g2l.cli"],                                              # one module per command family, argument parsing, output
    ["g2l.cli.common"],                                       # the parser, run_cli and exit codes every command shares
    ["g2l.app", "g2l.app_library"],                           # the web app (Gradio) and its Library tab
    ["g2l.demo"],                                             # the demo build pipeline: render, extract, train, ground
    ["g2l.batch", "g2l.batch_output", "g2l.feature_cache", "g2l.library"],  # many videos: batch JSONL, cache, index
    ["g2l.train", "g2l.inference", "g2l.explain", "g2l.plots", "g2l.hub"],  # training; Grounder; why; picture; export
    ["g2l.eval"],                                             # evaluation, written without the training loop
    ["g2l.engine"],                                           # checkpoint, logging, distributed, optimiser, run folder
    ["g2l.models", "g2l.losses"],
    ["g2l.data", "g2l.video", "g2l.ops", "g2l.synthetic"],
    ["g2l.config"],                                           # schema, bounds, compatibility, loading, YAML dialect
    ["g2l.io", "g2l.errors", "g2l.assets"],                   # reading and writing files people hand us, safely
]
FACE = "g2l"  # g2l/__init__.py re-exports the public API lazily; nothing inside the package imports it


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The g2l modules that ``name`` imports (``from g2l.x import y`` is g2l.x.y when that is a module)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "g2l"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != "g2l":
                continue
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return found - {name}


def layer_of(name: str) -> int:
    matches = [(len(prefix), index) for index, layer in enumerate(LAYERS) for prefix in layer
               if name == prefix or name.startswith(prefix + ".")]
    assert matches, f"{name} is in no layer: add it to LAYERS in tests/test_layers.py"
    return max(matches)[1]


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items() if name != FACE}


def test_every_module_has_a_layer_and_imports_point_down():
    upward = [f"{a} -> {b}" for a, targets in graph().items() for b in sorted(targets)
              if b == FACE or layer_of(b) < layer_of(a)]
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_no_import_circle():
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []
    circles = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                circles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_the_check_sees_imports():
    edges = graph()
    assert "g2l.eval.evaluator" in edges["g2l.train"] and "g2l.video.feature_extraction" in edges["g2l.inference"]
    assert "g2l.ops.spans" in edges["g2l.eval.metrics"]  # a module imported with "from g2l.ops.spans import ..."
    assert "g2l.io.atomic" in edges["g2l.train"]  # "from g2l.io import atomic"


def test_no_library_module_imports_a_test_module():
    """Test-only hooks (tests/crash_points.py) reach the library through the test harness."""
    found = [f"{path.relative_to(PACKAGE.parent)} imports {alias}" for path in sorted(PACKAGE.rglob("*.py"))
             for node in ast.walk(ast.parse(path.read_text()))
             for alias in ([a.name for a in node.names] if isinstance(node, ast.Import) else
                           [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
             if alias.split(".")[0] == "tests" or "crash_point" in alias]
    assert not found, "\n".join(found)
