"""The package's own import graph, read from the source (nothing is imported).

Two users: the sweep's page digest (a page is stale when any package module it runs changed:
the :func:`closure` of what its notebook's code imports, :func:`imports_in_code`) and the
test that keeps the package free of import cycles (:func:`cycles`). Every ``import`` or
``from ... import`` of a module of the package counts, at module level or inside a function
(an import deferred into a function is still a dependency, and two modules that defer imports
of each other are still a cycle); imports under ``if TYPE_CHECKING:`` do not (never run).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

PACKAGE = "ablation"


def package_dir() -> Path:
    """The folder of the ``ablation`` package."""
    return Path(__file__).resolve().parent


def modules(root: Path | None = None, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package under ``root``."""
    root = Path(root) if root is not None else package_dir()
    out = {}
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root).with_suffix("")
        parts = [package, *rel.parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> Iterable[ast.Import | ast.ImportFrom]:
    """Every import statement that can run (skips ``if TYPE_CHECKING:`` bodies)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        children = list(ast.iter_child_nodes(node))
        if isinstance(node, ast.If) and _is_type_checking(node):
            children = list(node.orelse)
        stack.extend(children)


def imports_of(name: str, known: dict[str, Path]) -> set[str]:
    """The package modules that module ``name`` imports (anywhere in its code)."""
    path = known[name]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return _targets(tree, name, path.name == "__init__.py", known) - {name}


def imports_in_code(source: str, known: dict[str, Path] | None = None) -> set[str]:
    """The package modules a piece of code (e.g. a notebook's cells) imports. IPython lines
    (``%magic``, ``!shell``) are skipped; code that still doesn't parse raises SyntaxError."""
    known = modules() if known is None else known
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    return _targets(ast.parse("\n".join(lines)), "__main__", False, known)


def _targets(tree: ast.AST, name: str, is_pkg: bool, known: dict[str, Path]) -> set[str]:
    found: set[str] = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:  # relative: from the module's package, up level - 1 packages
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[:len(pkg) - (node.level - 1)]
                base = ".".join([*pkg, base] if base else pkg)
            # `from pkg import sub` imports the submodule `pkg.sub` when there is one
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        for target in targets:
            while target and target not in known:  # `import ablation.x.y` -> nearest module
                target = target.rpartition(".")[0]
            if target and target != PACKAGE:
                found.add(target)
    return found


def graph(root: Path | None = None, package: str = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package modules it imports."""
    known = modules(root, package)
    return {name: imports_of(name, known) for name in known}


def closure(roots: Iterable[str], edges: dict[str, set[str]] | None = None) -> set[str]:
    """``roots`` and every package module they import, directly or not."""
    edges = graph() if edges is None else edges
    seen: set[str] = set()
    todo = [r for r in roots if r in edges]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(edges[name] - seen)
    return seen


def cycles(edges: dict[str, set[str]] | None = None) -> list[list[str]]:
    """The import cycles: each strongly connected group of two or more modules (sorted)."""
    edges = graph() if edges is None else edges
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm; the package is small: recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(groups)


def source_files(names: Iterable[str], root: Path | None = None) -> list[Path]:
    """The source files of modules ``names`` (sorted by module name)."""
    known = modules(root)
    return [known[n] for n in sorted(names) if n in known]
