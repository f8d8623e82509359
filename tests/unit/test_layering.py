"""The layering rules, checked on the source with ``ast``: who may import whom.

``herald/`` is the pure core and imports nothing of ours outside it; providers depend on the
core only; ``serve/`` is the HTTP layer and knows actors only through their typed clients, never the
composition root;
the local peers (``capture/``) and the benchmarks never reach into adapters or tests; the Python
client (``clients/python``) imports nothing of Herald's.
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


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_modules_stay_readable_in_one_sitting(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines; split it by concept"
