"""The layering of ARCHITECTURE.md, kept honest: imports inside the package point one way
(no cycles at run time), and the value layers never import the network stack."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "aiostream_chat"
# The pure layers: unit-tested with plain lists, so they must not pull in I/O libraries.
PURE = (
    *("_codec", "_events", "_models", "_accumulator", "_outcome", "_request", "_errors"),
    *("_blocks", "_options"),
)
NETWORK = ("aioboto3", "aiobotocore", "botocore", "aiohttp", "httpx")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path) -> set[str]:
    """Modules ``path`` imports at run time (``if TYPE_CHECKING:`` blocks excluded)."""
    tree = ast.parse(path.read_text())
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
                found.add(target)
                if node.module is None:
                    found.update(f"{target}.{alias.name}" for alias in node.names)
            elif node.module:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _runtime_imports(path) & modules.keys() for name, path in modules.items()}


def test_no_import_cycles_inside_the_package() -> None:
    """No module of the package imports, directly or through others, a module that imports it
    back (packages' ``__init__`` excluded: they re-export what lies below them)."""
    graph = {k: {d for d in v if not _is_init(d)} for k, v in _graph().items() if not _is_init(k)}
    cycles = []
    for start in graph:
        stack, seen = [(start, (start,))], set()
        while stack:
            node, path = stack.pop()
            for dep in graph.get(node, ()):
                if dep == start:
                    cycles.append(" -> ".join((*path, dep)))
                elif dep not in seen:
                    seen.add(dep)
                    stack.append((dep, (*path, dep)))
    assert cycles == []


def _is_init(name: str) -> bool:
    return name in ("aiostream_chat", "aiostream_chat.testing")


def test_pure_layers_do_not_import_the_network_stack() -> None:
    """The codec, events, models, accumulator, outcome, request and errors import no I/O
    library, so they stay unit-testable with plain values."""
    offenders = {}
    for name in PURE:
        imported = _runtime_imports(PACKAGE / f"{name}.py")
        bad = sorted(m for m in imported if m.split(".")[0] in NETWORK)
        if bad:
            offenders[name] = bad
    assert offenders == {}
