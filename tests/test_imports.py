"""Imports under ``src/bertfit`` run one way, and every import inside a function says why.

The graph is read from the source with :mod:`ast`: imports at module level and inside functions
(``TYPE_CHECKING`` blocks left out), so a cycle papered over by importing inside a function is
found too, and so is one that today's import order happens to survive.

The same holds one level up: the packages (``bertfit.explain``, ``bertfit.export``) and the
top-level modules (``bertfit.inference``, ``bertfit.cli``) form a graph of their own, in which
no package may import a package that imports it back, even when no two modules do.

``python tests/test_imports.py`` prints both graphs: each package with the packages it imports,
then each module with what it imports, and any cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "bertfit"


def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (packages by their own name)."""
    modules = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import that can run: at module level and inside functions, not ``TYPE_CHECKING``."""
    found, pending = [], [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif not (isinstance(node, ast.If) and _is_type_checking(node)):
            pending += ast.iter_child_nodes(node)
    return found


def _targets(node: ast.Import | ast.ImportFrom, name: str, modules: dict) -> set[str]:
    """The package modules an import statement of module ``name`` loads."""
    if isinstance(node, ast.Import):
        wanted = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative: resolve against this module's package
            package = name.split(".")
            if modules[name].name != "__init__.py":
                package.pop()
            package = package[: len(package) - node.level + 1]
            base = ".".join([*package, base] if base else package)
        # ``from pkg import sub`` loads pkg.sub when sub is a module, else pkg only.
        wanted = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                  for alias in node.names]  # fmt: skip
    # Only the module named counts: its parent packages run first, but a package's __init__
    # importing its own submodules is no cycle unless a submodule reads the package's names.
    return {t for t in wanted if t in modules and t != name and t != PACKAGE}


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports, at module level or inside its functions."""
    modules = module_files()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        edges = set()
        for node in _imports(tree):
            edges |= _targets(node, name, modules)
        graph[name] = edges
    return graph


def package_of(module: str) -> str:
    """The package-level unit of a module: ``bertfit.X`` (a subpackage or a top-level module)."""
    return ".".join(module.split(".")[:2])


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Package -> the other packages its modules import (from a module graph)."""
    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        source = package_of(module)
        packages.setdefault(source, set()).update(
            package_of(target) for target in targets if package_of(target) != source
        )
    return packages


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def unexplained_function_imports() -> list[str]:
    """Imports inside functions without a comment on their line or the line(s) just above.

    Such an import is allowed only for a reason (keeping torch or an optional extra off a path
    that must not need it, or start-up time), and the reason is written beside it.
    """
    problems = []
    for name, path in module_files().items():
        lines = path.read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(lines), str(path))
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Import | ast.ImportFrom) and not _has_reason(lines, node):
                    problems.append(f"{name}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    return sorted(set(problems))


def _has_reason(lines: list[str], node: ast.stmt) -> bool:
    """A ``#`` comment on the import's lines, or above it through a run of imports."""
    if any("#" in lines[i] for i in range(node.lineno - 1, node.end_lineno)):
        return True
    row = node.lineno - 2
    while row >= 0:
        text = lines[row]
        if "#" in text:
            return True
        # Continue upward through a block of imports that share one comment (on a line above,
        # on one of them, or on an opening line such as a ``try:``).
        text = text.strip()
        if not (text.startswith(("import ", "from ")) or text in ("", ")") or text.endswith(",")):
            return False
        row -= 1
    return False


def test_the_import_graph_has_no_cycle():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles under src/bertfit:\n" + "\n".join(map(str, cycles))


def test_cycle_finder_sees_a_cycle():
    """The checker itself: a two-module loop and a three-module loop are both reported."""
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert sorted(find_cycles(graph)) == [["a", "b"], ["c", "d", "e"]]


def test_no_package_imports_a_package_that_imports_it_back():
    cycles = find_cycles(package_graph(import_graph()))
    assert not cycles, "package-level import cycles under src/bertfit:\n" + "\n".join(
        " <-> ".join(cycle) for cycle in cycles
    )


def test_a_package_cycle_without_a_module_cycle_is_seen():
    """The shape ``explain/load.py`` once had: explain.load imports export.runtime and
    inference, which import explain.explain; no two modules import each other, but the
    packages explain, export and the module inference do."""
    graph = {
        "bertfit.explain.load": {"bertfit.export.runtime", "bertfit.inference"},
        "bertfit.explain.explain": set(),
        "bertfit.export.runtime": {"bertfit.explain.explain"},
        "bertfit.inference": {"bertfit.explain.explain"},
        "bertfit.cli": {"bertfit.explain.load"},
    }
    assert find_cycles(graph) == []
    assert package_graph(graph) == {
        "bertfit.cli": {"bertfit.explain"},
        "bertfit.explain": {"bertfit.export", "bertfit.inference"},
        "bertfit.export": {"bertfit.explain"},
        "bertfit.inference": {"bertfit.explain"},
    }
    assert find_cycles(package_graph(graph)) == [
        ["bertfit.explain", "bertfit.export", "bertfit.inference"]
    ]


def test_every_function_level_import_gives_its_reason():
    problems = unexplained_function_imports()
    assert not problems, "imports inside functions without a reason:\n" + "\n".join(problems)


def test_every_module_imports_on_its_own():
    """Each module imports in an interpreter where no other bertfit module is loaded yet."""
    script = (
        "import importlib, sys\n"
        f"names = {sorted(set(module_files()) - {'bertfit.__main__'})!r}\n"
        "failed = []\n"
        "for name in names:\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] == 'bertfit']:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as error:\n"
        "        failed.append(f'{name}: {type(error).__name__}: {error}')\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _print_graph(title: str, graph: dict[str, set[str]]) -> None:
    print(f"# {title}")
    for node in sorted(graph):
        print(f"{node} -> {', '.join(sorted(graph[node])) or '-'}")
    for cycle in find_cycles(graph):
        print("cycle:", " <-> ".join(cycle))


if __name__ == "__main__":
    modules = import_graph()
    _print_graph("packages", package_graph(modules))
    print()
    _print_graph("modules", modules)
