"""docs/ARCHITECTURE.md's layer table holds: no module imports a later layer, no import cycle, basicsr only in bsr/.

The package's imports are read with ``ast`` (nothing is imported), function-level imports included: an upward
import inside a function still ties a lower layer to a higher one.  So are string imports
(``importlib.import_module("pip_adapter....")``, ``__import__``, a table of module names like ``_LAZY``).
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


# calls that import a module named by a string: importlib.import_module(name), __import__(name)
STRING_IMPORTERS = {"import_module", "__import__"}
# where a string import names no module of ours: what it imports instead
DYNAMIC_IMPORTS = {
    "pip_adapter.plugins": "the user's plugin modules, named in options or on the command line",
    "pip_adapter.restore.onnx_export": "optional third-party packages (onnx, onnxruntime), by require()",
}


def _constant_strings(tree: ast.Module) -> Dict[str, List[str]]:
    """Module-level names bound to a string or to a dict/list/tuple of strings (``_LAZY = {...}``): their strings."""
    out: Dict[str, List[str]] = {}
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            value = node.value
            items = (value.values if isinstance(value, ast.Dict) else value.elts
                     if isinstance(value, (ast.List, ast.Tuple, ast.Set)) else [value])
            strings = [v.value for v in items if isinstance(v, ast.Constant) and isinstance(v.value, str)]
            if strings and len(strings) == len(items):
                for t in targets:
                    if isinstance(t, ast.Name):
                        out[t.id] = strings
    return out


def _local_strings(tree: ast.Module, module: str) -> Dict[str, List[str]]:
    """Names bound anywhere to f"{__name__}..." (``modname = f"{__name__}.{name}"``): a module of this package."""
    out: Dict[str, List[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and _string_targets(node.value, module, {}) is not None:
            for t in node.targets:
                if isinstance(t, ast.Name):
                    out.setdefault(t.id, []).extend(_string_targets(node.value, module, {}))
    return out


def _string_targets(arg: ast.expr, module: str, constants: Dict[str, List[str]]) -> List[str] | None:
    """The module names a string-import argument can take, or None when they cannot be read from the source."""
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return [arg.value]
    if isinstance(arg, ast.Name) and arg.id in constants:
        return constants[arg.id]
    if isinstance(arg, ast.Subscript) and isinstance(arg.value, ast.Name) and arg.value.id in constants:
        return constants[arg.value.id]   # _LAZY[name]: any of the table's values
    if isinstance(arg, ast.JoinedStr) and arg.values:
        head = arg.values[0]
        if (isinstance(head, ast.FormattedValue) and isinstance(head.value, ast.Name)
                and head.value.id == "__name__"):
            return [module]   # f"{__name__}.{sub}": a module inside this package
    return None


def _module_of(target: str) -> str:
    """``pip_adapter.a.b.attr`` -> the longest prefix that is a module of the package (else ``target``)."""
    parts = target.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in MODULES:
            return ".".join(parts[:n])
    return target


def _imports_of(name: str, source: str, is_pkg: bool) -> Tuple[List[Import], List[str]]:
    """(imports of the module ``name`` with this ``source``, lines of string imports that cannot be resolved)."""
    tree = ast.parse(source)
    top = {id(node) for node in tree.body}
    top_calls = {id(n) for stmt in tree.body if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                      ast.ClassDef)) for n in ast.walk(stmt)}
    constants = {**_local_strings(tree, name), **_constant_strings(tree)}
    found, unresolved = [], []
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
        elif isinstance(node, ast.Call) and node.args and (
                (isinstance(node.func, ast.Attribute) and node.func.attr in STRING_IMPORTERS)
                or (isinstance(node.func, ast.Name) and node.func.id in STRING_IMPORTERS)):
            strings = _string_targets(node.args[0], name, constants)
            if strings is None:
                unresolved.append(f"{name}:{node.lineno}")
                continue
            targets = [_module_of(t) for t in strings]
            found += [Import(name, t, node.lineno, id(node) not in top_calls) for t in targets]
            continue
        else:
            continue
        for target in targets:
            found.append(Import(name, target, node.lineno, id(node) not in top))
    return found, unresolved


def _imports() -> Tuple[List[Import], List[str]]:
    found, unresolved = [], []
    for name, path in MODULES.items():
        f, u = _imports_of(name, path.read_text(encoding="utf-8"), path.name == "__init__.py")
        found += f
        unresolved += u
    return found, unresolved


IMPORTS, UNRESOLVED = _imports()


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


def test_string_imports_count_as_imports():
    # importlib.import_module / __import__ with a string are edges of the graph like import statements
    src = ("import importlib\n_LAZY = {'a': 'pip_adapter.omega', 'b': 'pip_adapter.wrap.pipnet'}\n"
           "def f(n):\n    importlib.import_module('pip_adapter.restore.extend').extend_checkpoint\n"
           "    __import__('pip_adapter.modules')\n    return importlib.import_module(_LAZY[n])\n"
           "def g(spec):\n    return importlib.import_module(spec)\n")
    found, unresolved = _imports_of("pip_adapter.utils.x", src, is_pkg=False)
    assert {(i.target, i.in_function) for i in found} >= {
        ("pip_adapter.restore.extend", True), ("pip_adapter.modules", True), ("pip_adapter.omega", True),
        ("pip_adapter.wrap.pipnet", True)}
    assert unresolved == ["pip_adapter.utils.x:8"]


def test_string_imports_name_their_modules():
    # a string import whose module cannot be read from the source hides an edge from the tests below
    hidden = [u for u in UNRESOLVED if u.rsplit(":", 1)[0] not in DYNAMIC_IMPORTS]
    assert not hidden, ("string imports of modules the source does not name (use an import statement, or add "
                        f"the module to DYNAMIC_IMPORTS with what it imports): {hidden}")


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


MAX_LINES = 500  # a module longer than this holds more than one room: split it along a seam


def test_no_module_is_over_the_line_limit():
    long = {m: n for m, path in MODULES.items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them along a real seam): {long}"
