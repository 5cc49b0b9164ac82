"""The shape of the package: rooms that import each other without cycles, modules of a readable size, and the
shared rules used from their one home (STYLE.md 13-14)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

TOOLKIT = Path(__file__).resolve().parents[2] / "toolkit"
MAX_LINES = 450


def _module_name(path: Path) -> str:
    parts = path.relative_to(TOOLKIT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(TOOLKIT.rglob("*.py"))}


def _import_nodes(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, inside functions too (a deferred import is still a dependency), but not those under
    `if TYPE_CHECKING:`, which never run."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    return [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom) and id(n) not in skipped]


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The toolkit modules ``name`` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("toolkit"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("toolkit"):
                continue
            found.add(target)
            for alias in node.names:  # `from . import x` imports the submodule x
                if f"{target}.{alias.name}" in known:
                    found.add(f"{target}.{alias.name}")
    # importing a.b.c runs a and a.b first
    closed = set()
    for target in found:
        parts = target.split(".")
        closed.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {t for t in closed if t in known and t != name and not name.startswith(t + ".")}


def test_no_import_cycle_in_the_toolkit() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    assert graph["toolkit._cli"], "the import walk found nothing: it is broken"
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_rooms_import_each_other_through_their_init() -> None:
    """A module of one room imports another room only through its __init__ (its exported names)."""
    modules = _modules()
    rooms = {n for n, p in modules.items() if p.name == "__init__.py" and n.count(".") == 1}
    offenders = []
    for name, path in modules.items():
        room = ".".join(name.split(".")[:2])
        for target in _imports(name, path, set(modules)):
            other = ".".join(target.split(".")[:2])
            if other in rooms and other != room and target != other and room != "toolkit":
                offenders.append(f"{name} imports {target}")
    assert not offenders, offenders


@pytest.mark.parametrize("path", sorted(TOOLKIT.rglob("*.py")), ids=lambda p: str(p.relative_to(TOOLKIT)))
def test_no_module_is_too_long(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(TOOLKIT)} has {lines} lines (at most {MAX_LINES}): split it by topic"


def test_patterns_are_applied_whole() -> None:
    """`re.match` with `^...$` also accepts a trailing newline; every rule applies its pattern with fullmatch."""
    offenders = []
    for path in sorted(TOOLKIT.rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"re\.compile\(r?[\"']\^.*\$[\"']", line) or re.search(r"re\.match\(r?[\"']\^", line):
                offenders.append(f"{path.relative_to(TOOLKIT)}:{number}: {line.strip()}")
    assert not offenders, offenders


def test_the_process_umask_is_never_changed() -> None:
    """os.umask is process-wide: setting it, even to read it, races every thread that creates a file meanwhile."""
    offenders = [
        str(p.relative_to(TOOLKIT)) for p in TOOLKIT.rglob("*.py") if "os.umask(" in p.read_text(encoding="utf-8")
    ]
    assert not offenders, offenders
