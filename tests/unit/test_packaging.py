"""What pyproject.toml declares is what the product imports: no distribution arrives only because
another one happens to bring it (``prometheus_client`` through ``ray[serve]``), none is declared
for nothing, and what an extra holds is imported only where that extra is needed."""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

from launcher.cli import main

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
#: The packages pip installs (``[tool.setuptools.packages.find]``) and the extras each may use
#: beyond the core dependencies.
PRODUCT = {"herald": (), "actors": (), "serve": (), "capture": (), "launcher": (), "jobs": (),
           "analytics": ("report",)}
OURS = set(PRODUCT) | {"bench", "tests"}


def _name(requirement: str) -> str:
    """``"ray[serve]==2.60.0"`` → ``"ray"``, in the normal form (PEP 503)."""
    return re.sub(r"[-_.]+", "-", re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0]).lower()


def _declared(extras: tuple[str, ...] = ()) -> set[str]:
    names = {_name(r) for r in PROJECT["dependencies"]}
    for extra in extras:
        names |= {_name(r) for r in PROJECT["optional-dependencies"][extra]}
    return names


@functools.cache
def _third_party_imports(package: str) -> dict[str, set[str]]:
    """Top-level module → the files of ``package`` that import it (lazy imports included)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top not in OURS and top not in sys.stdlib_module_names and top != "__future__":
                    found.setdefault(top, set()).add(path.relative_to(ROOT).as_posix())
    return found


@functools.cache
def _installed() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())  # module → distributions: slow


def _distributions(module: str) -> set[str]:
    return {_name(d) for d in _installed().get(module, [])}


@pytest.mark.parametrize("package", sorted(PRODUCT))
def test_every_import_is_a_declared_distribution(package: str) -> None:
    allowed = _declared(PRODUCT[package])
    wrong = {f"{module} ({', '.join(sorted(_distributions(module))) or 'not installed'}): "
             f"{', '.join(sorted(files))}"
             for module, files in _third_party_imports(package).items()
             if not _distributions(module) & allowed}
    assert not wrong, f"{package}/ imports what pyproject.toml does not declare: {sorted(wrong)}"


def test_every_core_dependency_is_imported() -> None:
    imported = set().union(*(_distributions(module) for package in PRODUCT
                             for module in _third_party_imports(package)))
    assert _declared() - imported == set()


def test_the_report_extra_stays_out_of_what_delivers() -> None:
    extra = _declared(("report",)) - _declared()
    for package in set(PRODUCT) - {"analytics"}:
        for module, files in _third_party_imports(package).items():
            assert not _distributions(module) & extra, f"{module} in {sorted(files)}"


def test_version_is_the_installed_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"herald {importlib.metadata.version('herald')}\n"
    assert importlib.metadata.version("herald") == PROJECT["version"]


def test_report_without_its_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [m for m in sys.modules if m == "analytics" or m.startswith("analytics.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if not installed
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--data-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        "herald: herald report needs pandas and matplotlib: pip install 'herald[report]'\n")
