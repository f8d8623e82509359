"""The layering rules, checked on the source with ``ast``: who may import whom.

``herald/`` is the pure core and imports nothing of ours outside it; providers depend on the
core only; ``serve/`` is the HTTP layer and knows actors only through their typed clients, never the
composition root;
the local peers (``capture/``) and the benchmarks never reach into adapters or tests; the Python
client (``clients/python``) imports nothing of Herald's. And no two modules of ours import each
other, directly or round a longer circle (imports inside functions count: a circle read in the
source is one whether or not Python trips on it).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = {"herald", "actors", "serve", "capture", "launcher", "jobs", "analytics", "bench", "tests"}
#: package (or sub-package) → the packages of ours it may import
ALLOWED = {
    "herald": {"herald"},
    "actors/providers": {"herald", "actors.providers"},
    "actors": {"herald", "actors"},
    # serve/ reaches actors only through their typed clients (tests/unit/test_clients.py).
    "serve": {"herald", "serve", "actors.clients", "actors.idempotency", "actors.admin_sessions"},
    "capture": {"herald", "capture"},
    "jobs": {"herald", "jobs"},
    "analytics": {"herald", "analytics"},
    "launcher": {"herald", "actors", "serve", "capture", "launcher", "jobs", "analytics"},
    "bench": {"herald", "actors", "serve", "capture", "launcher", "jobs", "analytics", "bench"},
    # The Python client is a package of its own (``pip install ./clients/python``): nothing of ours.
    "clients/python": set(),
}
MAX_LINES = 420


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {name for name in names if name.split(".")[0] in OURS}


def _rule_for(path: Path) -> tuple[str, set[str]]:
    relative = path.relative_to(ROOT).as_posix()
    for place in sorted(ALLOWED, key=len, reverse=True):  # the most specific place wins
        if relative.startswith(place + "/"):
            return place, ALLOWED[place]
    raise AssertionError(f"no layering rule for {relative}")


def _sources() -> list[Path]:
    return sorted(p for place in ALLOWED for p in (ROOT / place).rglob("*.py")
                  if (ROOT / place).is_dir())


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_imports_follow_the_layers(path: Path) -> None:
    place, allowed = _rule_for(path)
    wrong = sorted(name for name in _imports(path)
                   if not any(name == ok or name.startswith(ok + ".") for ok in allowed))
    assert not wrong, f"{place}/ may import only {sorted(allowed)}; {path.name} imports {wrong}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Module of ours → the modules of ours it imports (``from a import b``: ``a.b`` if a module)."""
    modules = {_module_name(path): path for place in sorted(OURS) if (ROOT / place).is_dir()
               for path in (ROOT / place).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        wanted: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                wanted.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                wanted.update(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}"
                              in modules else node.module for alias in node.names)
        graph[name] = {other for other in wanted if other in modules and other != name}
    return graph


def _a_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (its modules in order, the first again at the end), or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        if module in path:
            return [*path[path.index(module):], module]
        if module in done:
            return None
        path.append(module)
        for imported in sorted(graph[module]):
            if circle := visit(imported):
                return circle
        path.pop()
        done.add(module)
        return None

    return next((circle for module in sorted(graph) if (circle := visit(module))), None)


def test_no_import_circle_among_our_modules() -> None:
    graph = _import_graph()
    assert {"launcher.runtime", "launcher.deployment"} <= set(graph)  # the graph is ours
    assert "launcher.deployment" in graph["launcher.runtime"]
    circle = _a_circle(graph)
    assert circle is None, "import circle: " + " -> ".join(circle or [])


def test_the_circle_check_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _a_circle(graph) == ["a", "b", "c", "a"]
    assert _a_circle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_modules_stay_readable_in_one_sitting(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines; split it by concept"
