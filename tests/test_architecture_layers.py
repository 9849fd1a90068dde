"""docs/ARCHITECTURE.md's layer table holds: no module imports a later layer, no import cycle, basicsr only in bsr/.

The package's imports are read with ``ast`` (nothing is imported), function-level imports included: an upward
import inside a function still ties a lower layer to a higher one.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, List, NamedTuple, Tuple

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "pip_adapter"
ARCHITECTURE = REPO / "docs" / "ARCHITECTURE.md"
MAX_FUNCTION_LEVEL = 10  # own-module imports inside functions (only where the BasicSR glue must stay lazy)


class Import(NamedTuple):
    importer: str
    target: str
    line: int
    in_function: bool


def _module_names() -> Dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _module_names()


def _imports() -> List[Import]:
    found = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {id(node) for node in tree.body}
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = name.split(".") if is_pkg else name.split(".")[:-1]
                    parts = parts[:len(parts) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                # "from pkg import sub" imports the module pkg.sub; "from mod import name" imports mod
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
            else:
                continue
            for target in targets:
                found.append(Import(name, target, node.lineno, id(node) not in top))
    return found


IMPORTS = _imports()


def _layers() -> List[Tuple[str, List[str]]]:
    """(layer name, paths) per row of the layer table, in order."""
    rows = []
    for line in ARCHITECTURE.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and line.lstrip().startswith("|"):
            paths = re.findall(r"`(pip_adapter/[^`]*)`", cells[1])
            if paths:
                rows.append((cells[0], paths))
    return rows


LAYERS = _layers()


def _layer_of(module: str) -> int:
    path = MODULES[module].relative_to(REPO).as_posix()
    best, best_len = -1, -1
    for i, (_, paths) in enumerate(LAYERS):
        for p in paths:
            hit = path == p if not p.endswith("/") else path.startswith(p)
            if hit and len(p) > best_len:
                best, best_len = i, len(p)
    return best


def test_every_module_has_a_layer_in_the_architecture_table():
    assert len(LAYERS) >= 10, f"could not read the layer table of {ARCHITECTURE}"
    missing = sorted(m for m in MODULES if _layer_of(m) < 0)
    assert not missing, (f"modules in no layer of docs/ARCHITECTURE.md: {missing}; add a row (or a path to a "
                         "row) for their package in the layer table, placed below everything they import")


def test_no_module_imports_a_later_layer():
    upward = []
    for imp in IMPORTS:
        if imp.target in MODULES:
            src, dst = _layer_of(imp.importer), _layer_of(imp.target)
            if dst > src:
                upward.append(f"{imp.importer}:{imp.line} ({LAYERS[src][0]}) imports {imp.target} "
                              f"({LAYERS[dst][0]})")
    assert not upward, ("imports from a later layer of docs/ARCHITECTURE.md — move the shared code down or the "
                        "caller up:\n  " + "\n  ".join(upward))


def test_no_import_cycle():
    graph: Dict[str, set] = {m: set() for m in MODULES}
    for imp in IMPORTS:
        if imp.target in MODULES and imp.target != imp.importer:
            graph[imp.importer].add(imp.target)
    # Tarjan's strongly connected components, iteratively
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack = set()
    cycles = []
    counter = [0]

    def visit(root: str) -> None:
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    cycles.append(sorted(comp))

    for m in sorted(graph):
        if m not in index:
            visit(m)
    assert not cycles, f"import cycles (function-level imports included): {cycles}"


def test_function_level_imports_of_own_modules_are_few():
    # the CLI imports what a command runs inside that command, by design: building the parser (--help, argument
    # errors) must not import torch; tests/test_cli_lazy.py checks that, this test the rest of the package
    inner = sorted({f"{i.importer}:{i.line}" for i in IMPORTS  # one per import statement
                    if i.in_function and (i.target == "pip_adapter" or i.target.startswith("pip_adapter."))
                    and not i.importer.startswith("pip_adapter.cli.")})
    assert len(inner) <= MAX_FUNCTION_LEVEL, (
        f"{len(inner)} function-level imports of pip_adapter modules (at most {MAX_FUNCTION_LEVEL}): import at "
        "the module top; break a cycle by moving code, not by hiding the import:\n  " + "\n  ".join(inner))


@pytest.mark.parametrize("dependency,home", [("basicsr", "pip_adapter.bsr")])
def test_only_the_glue_imports_basicsr(dependency, home):
    outside = [f"{i.importer}:{i.line}" for i in IMPORTS
               if (i.target == dependency or i.target.startswith(dependency + "."))
               and not (i.importer == home or i.importer.startswith(home + "."))]
    assert not outside, f"{dependency} imported outside {home}: {outside}"
