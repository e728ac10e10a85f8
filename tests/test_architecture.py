"""The architecture bars of issue 21, checked statically from the source (fast, no network).

* (a) no module of ``hw_fhir/``, ``smart_app/`` or ``plugins/`` is over 800 lines;
* (b) no private name (one leading ``_``) is imported from another module;
* (c) no intra-project import inside a function, unless its line says why (``# lazy: <reason>``);
* (d) the top-level intra-project import graph has no cycle;
* (e) every ``raise`` in product code raises a class of the one tree in :mod:`hw_fhir.errors`
  (or re-raises, or raises a caught or built exception held in a variable);
* (f) a fresh interpreter per top-level package imports every module of it, in sorted order.

Each test lists every violation it finds, file and line, so one run shows all the work left.
"""

from __future__ import annotations

import ast
import builtins
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 800

#: Modules only their runner may import (they act at import time), left out of (f).
NOT_IMPORTABLE = {"hw_fhir.migrations.env": "alembic's migration runner: it migrates on import"}

#: Builtin exceptions that are contracts or control flow, not errors raised on purpose to a caller
#: (AttributeError: what a module's ``__getattr__`` must raise for an unknown name).
CONTROL_FLOW = {"NotImplementedError", "AssertionError", "StopIteration", "StopAsyncIteration",
                "GeneratorExit", "SystemExit", "KeyboardInterrupt", "AttributeError"}


@dataclass(frozen=True)
class Module:
    """One Python file of the project: its dotted name, its top-level package and its path."""

    name: str
    top: str
    path: Path
    is_package: bool
    product: bool  # product code (checked by (c)-(f)); tests and test helpers are not

    @property
    def package(self) -> str:
        """The package a relative import starts from."""
        return self.name if self.is_package else self.name.rpartition(".")[0]

    @property
    def rel(self) -> str:
        """The path from the repository root (the path itself outside it)."""
        if self.path.is_relative_to(ROOT):
            return self.path.relative_to(ROOT).as_posix()
        return self.path.as_posix()


def _dotted(base: Path, path: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> tuple[Module, ...]:
    """Every module of hw_fhir/, smart_app/ and the vendor plugin packages, and every test file."""
    found: list[Module] = []
    roots: list[tuple[Path, Path, bool]] = [(ROOT, ROOT / "hw_fhir", True),
                                            (ROOT, ROOT / "smart_app", True)]
    for dist in sorted(p for p in (ROOT / "plugins").iterdir() if p.is_dir()):
        for pkg in sorted(p for p in dist.iterdir() if (p / "__init__.py").exists()):
            roots.append((dist, pkg, pkg.name != "tests"))
        if (dist / "tests").is_dir() and not (dist / "tests" / "__init__.py").exists():
            roots.append((dist / "tests", dist / "tests", False))
    roots.append((ROOT / "tests", ROOT / "tests", False))
    for base, folder, product in roots:
        for path in sorted(folder.rglob("*.py")):
            if "node_modules" in path.parts:
                continue
            name = _dotted(base, path)
            found.append(Module(name, name.split(".")[0], path, path.name == "__init__.py",
                                product))
    return tuple(found)


def product_modules() -> list[Module]:
    return [m for m in modules() if m.product]


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


@cache
def _names() -> dict[str, Module]:
    return {m.name: m for m in product_modules()}


def _project_tops() -> set[str]:
    return {m.top for m in product_modules()}


def _absolute(module: Module, node: ast.ImportFrom) -> str:
    """The absolute module name an ``ImportFrom`` names (``from ..x import y`` -> ``pkg.x``)."""
    if not node.level:
        return node.module or ""
    base = module.package.split(".")
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _is_project(name: str) -> bool:
    return name.split(".")[0] in _project_tops()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _top_level_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports run when the module is imported (module body, its if/try blocks; not TYPE_CHECKING)."""
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop(0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node):
                stack.extend(node.body)
            stack.extend(node.orelse)
        elif isinstance(node, ast.Try):
            stack.extend([*node.body, *node.orelse, *node.finalbody])
            for handler in node.handlers:
                stack.extend(handler.body)
        elif isinstance(node, ast.With):
            stack.extend(node.body)


def _function_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    yield sub


# --------------------------------------------------------------------------- (a) sizes


def test_no_module_is_over_800_lines() -> None:
    big = []
    for module in modules():
        if not module.rel.startswith(("hw_fhir/", "smart_app/", "plugins/")):
            continue
        lines = module.path.read_text(encoding="utf-8").count("\n")
        if lines > MAX_LINES:
            big.append(f"{module.rel}: {lines} lines")
    assert not big, f"{len(big)} modules over {MAX_LINES} lines:\n" + "\n".join(big)


# --------------------------------------------------------------------------- (b) private names


def private_imports(module: Module) -> list[str]:
    """``from x import _private`` lines of one module (dunder names are not private)."""
    found = []
    for node in ast.walk(_tree(module.path)):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    source = _absolute(module, node)
                    found.append(f"{module.rel}:{node.lineno}: from {source} import {alias.name}")
    return found


def test_no_private_name_is_imported_across_modules() -> None:
    found = [line for module in modules() for line in private_imports(module)]
    assert not found, f"{len(found)} private names imported across modules:\n" + "\n".join(found)


# --------------------------------------------------------------------------- (c) local imports


def local_imports(module: Module) -> list[str]:
    """Intra-project imports inside functions that do not say ``# lazy: <reason>``."""
    lines = module.path.read_text(encoding="utf-8").splitlines()
    found = []
    for node in _function_imports(_tree(module.path)):
        if isinstance(node, ast.ImportFrom):
            targets = [_absolute(module, node)]
        else:
            targets = [alias.name for alias in node.names]
        if not any(_is_project(t) for t in targets):
            continue
        text = lines[node.lineno - 1: (node.end_lineno or node.lineno)]
        if any("# lazy:" in line for line in text):
            continue
        found.append(f"{module.rel}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    return found


def test_no_function_local_intra_project_imports() -> None:
    found = [line for module in product_modules() for line in local_imports(module)]
    assert not found, (
        f"{len(found)} function-local intra-project imports (move code to break the cycle, or "
        "mark a real reason with '# lazy: <reason>'):\n" + "\n".join(found))


# --------------------------------------------------------------------------- (d) cycles


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:n]) for n in range(1, len(parts))]


def _targets(module: Module, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The project modules an import names: ``from . import x`` is the submodule x,
    ``from .x import y`` is module x (or its submodule y, when y is one)."""
    known = _names()
    out: set[str] = set()
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name in known:
                out.add(alias.name)
        return out
    source = _absolute(module, node)
    for alias in node.names:
        sub = f"{source}.{alias.name}"
        if sub in known:
            out.add(sub)
        elif source in known:
            out.add(source)
    return out


@cache
def import_graph() -> dict[str, set[str]]:
    """module -> the project modules its import executes first.

    Importing ``p.q.x`` runs ``p`` and ``p.q`` first, so those are edges too, except
    for the packages the importer already sits in (they have run by then): a package
    ``__init__`` importing its own submodules is no cycle.
    """
    graph: dict[str, set[str]] = {}
    for module in product_modules():
        edges: set[str] = set()
        own = set(_ancestors(module.name)) | {module.name}
        for node in _top_level_imports(_tree(module.path)):
            for target in _targets(module, node):
                for step in [*_ancestors(target), target]:
                    if step not in own and step in _names():
                        edges.add(step)
        graph[module.name] = edges
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle through each strongly connected component (Tarjan + BFS)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def visit(start: str) -> None:  # iterative Tarjan: deep graphs must not hit the recursion limit
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in graph.get(node, ()):
                        components.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    cycles = []
    for component in components:
        members = set(component)
        start = component[0]
        paths = {start: [start]}
        queue = [start]
        cycle: list[str] | None = None
        while queue and cycle is None:
            node = queue.pop(0)
            for child in sorted(graph[node] & members):
                if child == start:
                    cycle = [*paths[node], start]
                    break
                if child not in paths:
                    paths[child] = [*paths[node], child]
                    queue.append(child)
        cycles.append(cycle or component)
    return cycles


def test_import_cycles_are_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert import_cycles(graph) == [["a", "b", "c", "a"], ["e", "e"]]


def test_the_import_graph_is_what_imports_run() -> None:
    graph = import_graph()
    # a package __init__ importing its own submodules is an edge down, never back up
    assert "hw_fhir.store.sql" in graph["hw_fhir.store"]
    assert "hw_fhir.store" not in graph["hw_fhir.store.sql"]
    # from .x import y is module x; importing hw_fhir.x from smart_app runs hw_fhir first
    assert "hw_fhir.errors" in graph["hw_fhir.sync.export"]
    assert "hw_fhir" in graph["smart_app.bulk_api"] and "hw_fhir.sync" in graph["smart_app.bulk_api"]


def test_no_import_cycles() -> None:
    cycles = import_cycles(import_graph())
    assert not cycles, f"{len(cycles)} import cycles (one per tangle, shortest shown):\n" + "\n".join(
        " -> ".join(cycle) for cycle in cycles)


# --------------------------------------------------------------------------- (e) raises


@cache
def error_classes() -> frozenset[str]:
    """The classes hw_fhir/errors.py defines: the one exception tree."""
    tree = _tree(ROOT / "hw_fhir" / "errors.py")
    return frozenset(n.name for n in tree.body if isinstance(n, ast.ClassDef))


def _imported_from(module: Module) -> dict[str, str]:
    """name bound by an import -> the absolute module it comes from (``import x as y``: x)."""
    bound: dict[str, str] = {}
    for node in ast.walk(_tree(module.path)):
        if isinstance(node, ast.ImportFrom):
            source = _absolute(module, node)
            for alias in node.names:
                bound[alias.asname or alias.name] = source
        elif isinstance(node, ast.Import):
            for alias in node.names:
                bound[alias.asname or alias.name.split(".")[0]] = alias.name
    return bound


def bad_raises(module: Module) -> list[str]:
    """``raise`` statements naming a class outside the one tree.

    Allowed: a class of :mod:`hw_fhir.errors` (imported, or ``errors.X``); a name in
    lower case (a caught exception, or one built by a helper: ``raise exc``,
    ``raise _bad(...)``); a library's own exception where its protocol demands it
    (imported from a third-party package); the control-flow builtins in ``CONTROL_FLOW``.
    """
    imported = _imported_from(module)
    tree = _tree(module.path)
    own_classes = {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Raise) or node.exc is None:
            continue
        target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        if isinstance(target, ast.Attribute):
            head = target
            while isinstance(head, ast.Attribute):
                head = head.value
            root = imported.get(head.id, "") if isinstance(head, ast.Name) else ""
            if root in ("hw_fhir.errors", "hw_fhir") and target.attr in error_classes():
                continue
            if root and not _is_project(root) and root.split(".")[0] != "builtins":
                continue  # a library's exception (requests.ConnectionError)
            if not target.attr.lstrip("_")[:1].isupper():
                continue  # a method that builds the exception
            found.append(f"{module.rel}:{node.lineno}: raise {ast.unparse(target)}")
            continue
        if not isinstance(target, ast.Name):
            continue  # raise transient[0], raise self.error...: a value, not a class
        name = target.id
        if not name.lstrip("_")[:1].isupper():
            continue  # raise exc / raise _bad(...): a caught or built exception
        if module.name == "hw_fhir.errors" and name in error_classes():
            continue
        source = imported.get(name)
        if source == "hw_fhir.errors" and name in error_classes() and name not in own_classes:
            continue
        if source and not _is_project(source):
            continue  # a library's exception its protocol demands (authlib's OAuth2 errors)
        if source is None and name in CONTROL_FLOW and hasattr(builtins, name):
            continue
        where = ("a builtin" if source is None and hasattr(builtins, name) else
                 f"defined in {module.rel}" if name in own_classes else
                 f"from {source}" if source else "not imported")
        found.append(f"{module.rel}:{node.lineno}: raise {name} ({where})")
    return found


def test_every_raise_comes_from_the_one_tree() -> None:
    found = [line for module in product_modules() for line in bad_raises(module)]
    assert not found, (f"{len(found)} raises outside hw_fhir.errors (add a class there, with the "
                       "builtin as a second base if callers catch it):\n" + "\n".join(found))


# --------------------------------------------------------------------------- (f) fresh imports


def _sys_path_for(top: str) -> str:
    module = next(m for m in product_modules() if m.top == top)
    depth = len(module.name.split("."))
    base = module.path.parent if module.is_package else module.path
    for _ in range(depth):
        base = base.parent
    return str(base)


@pytest.mark.parametrize("top", sorted({m.top for m in product_modules()}))
def test_every_module_imports_in_a_fresh_interpreter(top: str) -> None:
    names = sorted(m.name for m in product_modules() if m.top == top and m.name not in NOT_IMPORTABLE)
    script = (
        "import importlib, sys, traceback\n"
        f"sys.path.insert(0, {_sys_path_for(top)!r})\n"
        "failed = []\n"
        f"for name in {names!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        failed.append(name + ': ' + traceback.format_exc(limit=-3))\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert done.returncode == 0, f"modules of {top} that do not import:\n{done.stdout}{done.stderr}"


# --------------------------------------------------------------------------- the checks check


def test_the_checks_catch_violations(tmp_path: Path) -> None:
    module = Module("hw_fhir.fake", "hw_fhir", tmp_path / "hw_fhir" / "fake.py", False, True)
    module.path.parent.mkdir(parents=True)
    module.path.write_text(
        "from .errors import NotFound\n"
        "from .store.sql import _filter_clause\n"
        "from authlib.oauth2.rfc6749 import InvalidGrantError\n"
        "class Local(Exception):\n    pass\n"
        "def f(x):\n"
        "    from .reminders import run  # a cycle hidden here\n"
        "    from .cli import main  # lazy: start-up speed\n"
        "    import json\n"
        "    if x == 1: raise ValueError('bare')\n"
        "    if x == 2: raise RuntimeError\n"
        "    if x == 3: raise Local('outside the tree')\n"
        "    if x == 4: raise NotFound('fine')\n"
        "    if x == 5: raise InvalidGrantError()\n"
        "    if x == 6: raise NotImplementedError\n"
        "    if x == 7: raise _Private('a class all the same')\n"
        "    try:\n        pass\n    except KeyError as exc:\n        raise exc\n"
    )
    assert [line.split(": ", 1)[1] for line in private_imports(module)] == [
        "from hw_fhir.store.sql import _filter_clause"]
    assert [line.split(": ", 1)[1] for line in local_imports(module)] == [
        "from .reminders import run  # a cycle hidden here"]
    assert [line.split(": ", 1)[1] for line in bad_raises(module)] == [
        "raise ValueError (a builtin)", "raise RuntimeError (a builtin)",
        f"raise Local (defined in {module.rel})", "raise _Private (not imported)"]
