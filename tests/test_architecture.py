"""The package's shape, as docs/architecture.md draws it: which component each module belongs to, which
components may import which, no import cycle, no private name imported across modules.

Imports are read from the source (ast), at every level of a module (an import inside a function
runs too); imports under `if TYPE_CHECKING:` are left out, they never run."""
from __future__ import annotations

import ast
import fnmatch
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "exporter" / "batch_exporter"
DOC = ROOT / "docs" / "architecture.md"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, except what sits under `if TYPE_CHECKING:`."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def imports(name: str, path: Path, modules: dict[str, Path]) -> Iterator[tuple[str, list[str], int]]:
    """(imported module of this package, names taken from it, line) for each runtime import."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target not in modules:
                continue
            taken = []
            for alias in node.names:
                if f"{target}.{alias.name}" in modules:  # `from package import submodule`
                    yield f"{target}.{alias.name}", [alias.name], node.lineno
                else:
                    taken.append(alias.name)
            if taken:
                yield target, taken, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    yield alias.name, [alias.name.rpartition(".")[2]], node.lineno


def module_graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {name: {target for target, _, _ in imports(name, path, modules) if target != name}
            for name, path in modules.items()}


def documented() -> tuple[dict[str, list[str]], dict[str, set[str]]]:
    """(component -> module patterns, component -> components it may import) from the doc's two blocks."""
    text = DOC.read_text(encoding="utf-8")
    components_block = re.search(r"```components\n(.*?)```", text, re.S)
    edges_block = re.search(r"```dependencies\n(.*?)```", text, re.S)
    assert components_block and edges_block, f"{DOC}: the `components` and `dependencies` blocks are missing"
    components: dict[str, list[str]] = {}
    for line in components_block.group(1).splitlines():
        if line.strip():
            component, _, patterns = line.partition(":")
            components[component.strip()] = [p.strip() for p in patterns.split(",") if p.strip()]
    allowed: dict[str, set[str]] = {}
    for line in edges_block.group(1).splitlines():
        if not line.strip():
            continue
        source, arrow, targets = line.partition("-->")
        assert arrow, f"{DOC}: dependency line {line!r} has no -->"
        allowed[source.strip()] = {t.strip() for t in targets.split(",") if t.strip() and t.strip() != "(nothing)"}
    return components, allowed


def component_of(module: str, components: dict[str, list[str]]) -> str:
    short = module.removeprefix("batch_exporter").removeprefix(".") or "__init__"
    found = [c for c, patterns in components.items() if any(fnmatch.fnmatchcase(short, p) for p in patterns)]
    assert len(found) == 1, f"module {module} belongs to {found or 'no component'} in {DOC.name} (one expected)"
    return found[0]


def component_graph() -> dict[str, set[str]]:
    components, _ = documented()
    graph: dict[str, set[str]] = {c: set() for c in components}
    for module, targets in module_graph().items():
        source = component_of(module, components)
        graph[source] |= {component_of(t, components) for t in targets} - {source}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

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
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_cycle() -> None:
    assert cycles(module_graph()) == []


def test_no_module_imports_a_private_name_of_another() -> None:
    modules = package_modules()
    offences = [f"{path.relative_to(ROOT)}:{line}: {name} from {target}"
                for module, path in modules.items()
                for target, names, line in imports(module, path, modules)
                for name in names
                if target != module and name.startswith("_") and not name.startswith("__")]
    assert offences == []


def test_the_diagram_in_docs_architecture_is_the_import_graph() -> None:
    _, allowed = documented()
    actual = component_graph()
    assert set(allowed) == set(actual), "every component has one line in the dependencies block"
    not_drawn = {c: sorted(actual[c] - allowed[c]) for c in actual if actual[c] - allowed[c]}
    not_used = {c: sorted(allowed[c] - actual[c]) for c in actual if allowed[c] - actual[c]}
    assert not_drawn == {}, f"imports that {DOC.name} does not allow"
    assert not_used == {}, f"dependencies drawn in {DOC.name} that no import makes (keep the drawing true)"
    assert cycles(allowed) == [], "the components are layers: no cycle between them"


def test_the_core_never_imports_the_practice_tools_or_the_command_line() -> None:
    components, _ = documented()
    graph = module_graph()
    core = [m for m in graph if component_of(m, components) not in ("practice", "entry")]
    reaching = {m: sorted(t for t in graph[m] if component_of(t, components) in ("practice", "entry"))
                for m in core}
    assert {m: t for m, t in reaching.items() if t} == {}


# --- the checks themselves can fail ------------------------------------------------------------------


def test_a_cycle_is_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_type_checking_imports_are_left_out_and_late_imports_kept() -> None:
    source = ("from typing import TYPE_CHECKING\n"
              "if TYPE_CHECKING:\n    from .store import Store\n"
              "def late():\n    from .cli import _load\n")
    tree = ast.parse(source)
    seen = [ast.unparse(n) for n in _runtime_nodes(tree) if isinstance(n, ast.ImportFrom)]
    assert seen == ["from typing import TYPE_CHECKING", "from .cli import _load"]
    # only a plain `if TYPE_CHECKING:` is skipped: these bodies run
    for test in ("not TYPE_CHECKING", "TYPE_CHECKING or sys.flags.dev_mode"):
        tree = ast.parse(f"if {test}:\n    from .cli import _load\n")
        assert [ast.unparse(n) for n in _runtime_nodes(tree) if isinstance(n, ast.ImportFrom)] \
            == ["from .cli import _load"]


def test_a_private_module_imported_from_its_package_counts_as_a_private_name(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "_hidden.py").write_text("")
    (package / "user.py").write_text("from . import _hidden\nimport pkg._hidden\n")
    modules = {"pkg": package / "__init__.py", "pkg._hidden": package / "_hidden.py", "pkg.user": package / "user.py"}
    found = list(imports("pkg.user", package / "user.py", modules))
    assert found == [("pkg._hidden", ["_hidden"], 1), ("pkg._hidden", ["_hidden"], 2)]
