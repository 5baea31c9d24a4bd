"""The floor plan's rules that import-linter does not state (docs/architecture.md): the product
imports its own modules at the top of a module, never inside a function and never behind an
``except ImportError``, and no package imports one that imports it back (at any depth).

Read from the source with ``ast`` (nothing is imported), so the test is fast and names the
module and line of each breach. ``bench/cli.py`` loading the chosen subcommand through
``importlib`` is the one deliberate exception and is not an import statement.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("lockbench", "reference_impl", "bench", "nemesis", "workloads", "reports")


@dataclass(frozen=True)
class ImportSite:
    module: str
    line: int
    targets: tuple[str, ...]
    in_function: bool
    guarded: bool
    type_checking: bool


def module_files() -> dict[str, Path]:
    files: dict[str, Path] = {}
    for top in PRODUCT:
        for path in (ROOT / top).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            files[".".join(parts)] = path
    return files


FILES = module_files()


def targets_of(module: str, node: ast.Import | ast.ImportFrom) -> tuple[str, ...]:
    """The product modules an import statement names (``from a import b`` names ``a.b`` when
    that is a module, else ``a``)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module.split(".")
            if FILES[module].name != "__init__.py":
                package.pop()
            package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, base] if base else package)
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in FILES else base for a in node.names]
    return tuple(name for name in names if name.split(".")[0] in PRODUCT)


def import_sites() -> Iterator[ImportSite]:
    for module, path in FILES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            targets = targets_of(module, node)
            if not targets:
                continue
            in_function = guarded = type_checking = False
            above = parents.get(node)
            while above is not None:
                if isinstance(above, ast.FunctionDef | ast.AsyncFunctionDef):
                    in_function = True
                if isinstance(above, ast.Try) and any(
                    "ImportError" in ast.unparse(h.type) or "ModuleNotFound" in ast.unparse(h.type)
                    for h in above.handlers
                    if h.type is not None
                ):
                    guarded = True
                if isinstance(above, ast.If) and "TYPE_CHECKING" in ast.unparse(above.test):
                    type_checking = True
                above = parents.get(above)
            yield ImportSite(module, node.lineno, targets, in_function, guarded, type_checking)


SITES = list(import_sites())


def package_of(module: str, depth: int) -> str:
    parts = module.split(".")
    if FILES[module].name != "__init__.py":
        parts.pop()
    return ".".join(parts[:depth])


def package_cycles(depth: int) -> list[list[str]]:
    """Strongly connected groups of packages (cut at ``depth``) in the module-level imports."""
    graph: dict[str, set[str]] = defaultdict(set)
    for site in SITES:
        if site.type_checking:
            continue
        for target in site.targets:
            if target not in FILES:
                continue
            a, b = package_of(site.module, depth), package_of(target, depth)
            nested = a.startswith(b + ".") or b.startswith(a + ".")
            if a and b and a != b and not nested:
                graph[a].add(b)
    reaches = {node: _reachable(graph, node) for node in list(graph)}
    groups = {
        frozenset(n for n in reaches if n in reaches[m] and m in reaches[n]) | {m} for m in reaches
    }
    return sorted(sorted(group) for group in groups if len(group) > 1)


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph[node])
    return seen


def test_the_tree_is_read() -> None:
    assert len(FILES) > 100
    assert any(site.module == "bench.runner.test_run" for site in SITES)


def test_no_function_local_imports_of_the_projects_own_modules() -> None:
    local = [(s.module, s.line, s.targets) for s in SITES if s.in_function]
    assert local == []


def test_no_import_error_guards_around_the_projects_own_modules() -> None:
    guarded = [(s.module, s.line, s.targets) for s in SITES if s.guarded]
    assert guarded == []


def test_no_package_imports_one_that_imports_it_back() -> None:
    for depth in (1, 2, 3):
        assert package_cycles(depth) == [], depth
