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


# ---- one owner of the on-disk layout: ``herald/data_dir.py`` -----------------------------------

#: The product code (not tests, benchmarks or the separate client).
PRODUCT = ("herald", "actors", "serve", "capture", "launcher", "jobs", "analytics")
LAYOUT_OWNER = "herald/data_dir.py"
#: The directories of a data dir: flagged where code joins them into a path.
_DIRECTORIES = ("queue", "log", "analytics", "outbox", "events", ".staging", "reports")
#: Its files (and the store's names): flagged wherever code spells them.
_FILES = ("dev-api-key", "admin-key", "browser-secret", "unsubscribe-secret",
          "webhook-secrets.json", "layout.json", "ray-address.json", "rollup-manifest.json",
          ".rollup.lock")
_SUFFIXES = (".db", ".arrow", ".arrow.open", ".parquet", ".jsonl")
_SEGMENT_PATTERN = ("014d", r"\d{14}")
_HIVE_KEYS = ("dt", "channel")
#: Calls that join path pieces.
_JOINS = {"Path", "PurePath", "join", "joinpath", "path", "glob", "rglob"}


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes of ``tree`` (prose may name the files)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _path_pieces(tree: ast.AST) -> set[int]:
    """ids of the constants joined into a path: ``x / "queue"``, ``Path("log")``, ``join(…)``."""
    pieces: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            pieces += [node.left, node.right]
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in _JOINS:
                pieces += node.args
    return {id(p) for p in pieces if isinstance(p, ast.Constant)}


def _layout_spellings(path: Path) -> list[str]:
    """The layout names, suffixes and the segment pattern that ``path`` spells in its code."""
    tree = ast.parse(path.read_text(), filename=str(path))
    prose, joined = _docstrings(tree), _path_pieces(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or not isinstance(node.value, str) or id(node) in prose:
            continue
        text = node.value
        if ((id(node) in joined and text.strip("/") in _DIRECTORIES)
                or text.lstrip("*").rsplit("/", 1)[-1] in _FILES
                or any(text.endswith(s) and " " not in text for s in _SUFFIXES)
                or any(p in text for p in _SEGMENT_PATTERN)):
            found.append((node.lineno, f"line {node.lineno}: {text!r}"))
    return [text for _, text in sorted(found)]


def _product_sources() -> list[Path]:
    return sorted(p for place in PRODUCT for p in (ROOT / place).rglob("*.py"))


def test_the_layout_is_spelled_only_by_its_owner() -> None:
    spelled = {p.relative_to(ROOT).as_posix(): s for p in _product_sources()
               if p.relative_to(ROOT).as_posix() != LAYOUT_OWNER and (s := _layout_spellings(p))}
    assert not spelled, f"spelled outside {LAYOUT_OWNER} (use herald.data_dir): {spelled}"
    assert _layout_spellings(ROOT / LAYOUT_OWNER)  # the check sees the names where they are


def _partitioning_use(place: str) -> tuple[set[str], list[str]]:
    """What ``place``'s modules import from the layout's owners, and where they build a
    partitioning or name a hive key themselves."""
    imported: set[str] = set()
    own: list[str] = []
    for path in sorted((ROOT / place).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in {"herald.analytics_store",
                                                                    "herald.data_dir"}:
                imported.update(alias.name for alias in node.names)
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr == "partitioning"):
                own.append(f"{path.name}:{node.lineno} builds its own partitioning")
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr in {"field", "get"} and node.args
                  and isinstance(node.args[0], ast.Constant) and node.args[0].value in _HIVE_KEYS):
                own.append(f"{path.name}:{node.lineno} names the hive key {node.args[0].value!r}")
    return imported, own


def test_analytics_reads_the_parquet_layout_jobs_writes() -> None:
    """The writer (``jobs/``) and the reader (``analytics/``) take the partitioning and the
    layout's names from the same definitions, so neither can drift from the other."""
    written, writer_own = _partitioning_use("jobs")
    read, reader_own = _partitioning_use("analytics")
    assert not writer_own and not reader_own, writer_own + reader_own
    shared = {"partitioning", "EVENTS", "DAY"}
    assert shared <= written, f"jobs/ imports only {sorted(written)} of the layout"
    assert shared <= read, f"analytics/ imports only {sorted(read)} of the layout"


def test_the_layout_check_finds_a_spelling(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text('"""Keeps ``queue/shard-0.db``."""\nA = root / "queue"\n'
                      'B = f"{x:014d}.arrow"\nC = "dev-api-key"\nD = "the queue is empty"\n'
                      'E = command("queue")\nF = glob("*.parquet")\n')
    assert [s.split(":")[0] for s in _layout_spellings(module)] == [
        "line 2", "line 3", "line 3", "line 4", "line 7"]
