"""`pip install -r requirements.txt` alone runs the app and the command line, and ships no test tooling.

Three checks: every third-party module the app imports (anywhere, lazily too) belongs to a distribution
named in requirements.txt, pinned; importing every module of the app, with imports of anything outside
requirements.txt's dependency closure blocked, succeeds; and what requirements-dev.txt adds (hypothesis,
ruff, mypy, ...) is never needed.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
APP = [ROOT / "function_app.py", *sorted((ROOT / "provisioning").rglob("*.py"))]
LOCAL = {"provisioning", "function_app", "tests", "bench"}
# pytest stays in requirements.txt for the product brief's sake (see the comment there), not for the app.
NOT_FOR_THE_APP = {"pytest"}


def requirement_lines(path: Path) -> list[str]:
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line]


def production() -> dict[str, str]:
    """Name → pinned version of every requirement in requirements.txt."""
    pins: dict[str, str] = {}
    for line in requirement_lines(ROOT / "requirements.txt"):
        found = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.]+)", line)
        assert found, f"requirements.txt: {line!r} is not pinned as name==version"
        pins[canonicalize_name(found.group(1))] = found.group(2)
    return pins


def imported_top_levels(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def third_party(names: set[str]) -> set[str]:
    return {n for n in names if n not in sys.stdlib_module_names and n not in LOCAL and n != "__future__"}


@cache
def closure(roots: frozenset[str]) -> frozenset[str]:
    """The distributions ``roots`` install, following their declared dependencies (no extras)."""
    seen: set[str] = set()
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        for raw in metadata.requires(name) or ():
            requirement = Requirement(raw)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(canonicalize_name(requirement.name))
    return frozenset(seen)


def test_every_requirement_is_pinned_to_what_is_installed() -> None:
    for name, version in production().items():
        assert metadata.version(name) == version, (
            f"{name}: pinned {version}, installed {metadata.version(name)}"
        )


def test_every_third_party_import_of_the_app_is_a_direct_requirement() -> None:
    distributions = metadata.packages_distributions()
    pinned = set(production())
    missing: dict[str, list[str]] = {}
    for path in APP:
        for module in third_party(imported_top_levels(path)):
            owners = {canonicalize_name(d) for d in distributions.get(module, ())}
            if not owners & pinned:
                missing[f"{path.relative_to(ROOT)}: {module}"] = sorted(owners) or ["not installed"]
    assert not missing, f"imports not covered by requirements.txt: {missing}"


def test_async_azure_clients_come_with_their_transport() -> None:
    uses_aio = any(re.search(r"from azure\.[\w.]+\.aio\b", p.read_text()) for p in APP)
    assert uses_aio and "aiohttp" in production()


def test_test_and_lint_tools_are_not_in_production() -> None:
    dev_only = {
        canonicalize_name(Requirement(line).name)
        for line in requirement_lines(ROOT / "requirements-dev.txt")
        if not line.startswith("-r")
    }
    assert "-r requirements.txt" in requirement_lines(ROOT / "requirements-dev.txt")
    assert {"hypothesis", "ruff", "mypy", "anyio"} <= dev_only
    assert not dev_only & set(production())
    used = set().union(*(third_party(imported_top_levels(p)) for p in APP))
    assert not used & {"hypothesis", "ruff", "mypy", "pytest", "tree_sitter"}


BLOCKER = r"""
import importlib, importlib.abc, importlib.metadata as md, json, pkgutil, sys
allowed = set(json.loads(sys.argv[1]))
owners = md.packages_distributions()
norm = lambda n: n.lower().replace("_", "-").replace(".", "-")

class OnlyRequirements(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        top = name.split(".")[0]
        if top in sys.stdlib_module_names or top in ("provisioning", "function_app"):
            return None
        dists = {norm(d) for d in owners.get(top, ())}
        if dists and not dists & allowed:
            raise ImportError(f"{name} comes from {sorted(dists)}, outside requirements.txt")
        return None

sys.meta_path.insert(0, OnlyRequirements())
import provisioning
found = pkgutil.walk_packages(provisioning.__path__, "provisioning.")
modules = ["function_app"] + [m.name for m in found if not m.name.endswith("__main__")]
for name in modules:
    importlib.import_module(name)
from typer.testing import CliRunner
from provisioning.entrypoints.cli import app
result = CliRunner().invoke(app, ["--help"])
assert result.exit_code == 0, result.output
print(len(modules))
"""


def run_with_only(allowed: frozenset[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", BLOCKER, json.dumps(sorted(allowed))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_app_and_the_command_line_import_with_requirements_txt_alone() -> None:
    allowed = closure(frozenset(set(production()) - NOT_FOR_THE_APP))
    done = run_with_only(allowed)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) > 40  # every module was imported


@pytest.mark.parametrize("dropped", ["msgraph-core", "pyyaml", "tenacity"])
def test_the_import_check_fails_when_a_requirement_is_missing(dropped: str) -> None:
    allowed = closure(frozenset(set(production()) - NOT_FOR_THE_APP - {dropped}))
    done = run_with_only(allowed - {dropped})
    assert done.returncode != 0 and "outside requirements.txt" in done.stderr
