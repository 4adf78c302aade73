"""The app package: what `func azure functionapp publish` (and azd) upload, and the zip-deploy alternative.

Core Tools zips the project folder except ``.git``, ``.vscode``, ``.funcignore``, ``.gitignore``,
``local.settings.json`` and whatever ``.funcignore`` lists (gitignore syntax); it does not read
``.gitignore``. These tests build that file list from a tree like the one a developer has after
``make test`` (venv, node_modules, caches, state), and from this checkout, and say what the package must
and must not hold. The zip command in infra/README.md must produce the same list.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
from collections.abc import Iterable
from pathlib import Path

import pathspec
import pytest

ROOT = Path(__file__).resolve().parents[2]
ALWAYS_LEFT_OUT = {".git", ".vscode", ".funcignore", ".gitignore", "local.settings.json"}

# What the functions need at run time: the entrypoint, host configuration, dependencies, the mappings.
MUST_HOLD = {"function_app.py", "host.json", "requirements.txt", "mappings.yaml"}
# Anything under these, or matching these, must never ship.
MUST_NOT_HOLD = re.compile(
    r"""^(tests|bench|bench-results|infra|examples|node_modules|\.venv[^/]*|\.provisioning|\.azure
         |\.pytest_cache|\.mypy_cache|\.ruff_cache|\.hypothesis|\.python_packages|\.ci
         |simulators|docs)/
       |(^|/)__pycache__/|\.pyc$|\.sqlite3(-wal|-shm)?$|^local\.settings.*\.json$|^requirements-dev\.txt$
       |^(Makefile|package(-lock)?\.json|azure\.yaml|pyproject\.toml|mkdocs\.yml)$|\.md$""",
    re.VERBOSE,
)

# A developer's folder after `make test`, `make demo` and `make infra-check`.
WORKING_TREE = [
    "function_app.py",
    "host.json",
    "requirements.txt",
    "requirements-dev.txt",
    "mappings.yaml",
    "local.settings.json",
    "local.settings.example.json",
    "README.md",
    "Makefile",
    "azure.yaml",
    "package.json",
    "package-lock.json",
    "pyproject.toml",
    ".gitignore",
    ".funcignore",
    ".git/HEAD",
    ".vscode/settings.json",
    ".ci/run",
    ".azure/dev/.env",
    "provisioning/__init__.py",
    "provisioning/settings.py",
    "provisioning/entrypoints/functions/webhook.py",
    "provisioning/entrypoints/functions/__pycache__/webhook.cpython-311.pyc",
    "simulators/graph/simulator.py",
    "simulators/demo.py",
    "tests/unit/test_requirements.py",
    "tests/payloads/graph/notification.json",
    "bench/pipeline.py",
    "bench-results/run.json",
    "infra/main.bicep",
    "examples/mappings.yaml",
    ".venv/bin/python",
    ".venv/lib/python3.11/site-packages/pytest/__init__.py",
    ".venv-infra/bin/checkov",
    "node_modules/azurite/package.json",
    "node_modules/.bin/azurite",
    ".provisioning/state.sqlite3",
    ".provisioning/state.sqlite3-wal",
    ".pytest_cache/v/cache/lastfailed",
    ".mypy_cache/3.11/provisioning.json",
    ".ruff_cache/0.17.5/123",
    ".hypothesis/examples/abc",
    ".python_packages/lib/site-packages/x.py",
]


def core_tools_package(root: Path) -> list[str]:
    """The files Core Tools would zip: every file except the fixed exclusions and .funcignore's."""
    ignore = pathspec.GitIgnoreSpec.from_lines((root / ".funcignore").read_text().splitlines())
    found = []
    for folder, dirs, files in os.walk(root):
        relative = Path(folder).relative_to(root)
        dirs[:] = sorted(d for d in dirs if not (relative == Path(".") and d in ALWAYS_LEFT_OUT))
        for name in files:
            path = (relative / name).as_posix()
            if path in ALWAYS_LEFT_OUT:
                continue
            if not ignore.match_file(path):
                found.append(path)
    return sorted(found)


def make_tree(root: Path, files: Iterable[str]) -> None:
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x")
    (root / ".funcignore").write_text((ROOT / ".funcignore").read_text())


def test_the_package_holds_the_app_and_nothing_else(tmp_path: Path) -> None:
    make_tree(tmp_path, WORKING_TREE)
    package = core_tools_package(tmp_path)

    assert set(package) == {
        "function_app.py",
        "host.json",
        "requirements.txt",
        "mappings.yaml",
        "provisioning/__init__.py",
        "provisioning/settings.py",
        "provisioning/entrypoints/functions/webhook.py",
    }


def test_this_checkout_packages_every_module_the_functions_import_and_nothing_forbidden() -> None:
    package = core_tools_package(ROOT)
    forbidden = [p for p in package if MUST_NOT_HOLD.search(p)]
    assert not forbidden, forbidden[:20]
    assert {"function_app.py", "host.json", "requirements.txt"} <= set(package)
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "provisioning").rglob("*.py")}
    assert modules <= set(package)


def test_the_forbidden_pattern_catches_each_kind_of_thing() -> None:
    for path in WORKING_TREE:
        expected = path.split("/")[0] in {"function_app.py", "host.json", "requirements.txt", "mappings.yaml"}
        expected = expected or (path.startswith("provisioning/") and MUST_NOT_HOLD.search(path) is None)
        if path.split("/")[0] in ALWAYS_LEFT_OUT or path in ALWAYS_LEFT_OUT:
            continue
        assert (MUST_NOT_HOLD.search(path) is None) == expected, path


def test_nothing_the_functions_import_lives_in_what_is_left_out() -> None:
    # The simulators, the local host, the demo and the soak are left out; the deployed code must never
    # import them, nor the tests and benchmarks.
    imports = re.compile(r"^\s*(?:from|import)\s+(simulators|tests|bench)\b", re.MULTILINE)
    for path in [*(ROOT / "provisioning").rglob("*.py"), ROOT / "function_app.py"]:
        assert not imports.search(path.read_text()), path


def readme_zip_command() -> list[str]:
    text = (ROOT / "infra" / "README.md").read_text()
    found = re.search(r"^\s*(zip -r app\.zip(?:[^\n]*\\\n)*[^\n]*)$", text, re.MULTILINE)
    assert found, "infra/README.md shows no `zip -r app.zip ...` command"
    return shlex.split(found.group(1).replace("\\\n", " "))


def zip_package(root: Path, command: list[str]) -> list[str]:
    """What `zip -r app.zip <paths> -x <patterns>` puts in the archive (zip's -x wildcards cross '/')."""
    arguments = command[3:]
    split = arguments.index("-x") if "-x" in arguments else len(arguments)
    paths, patterns = arguments[:split], arguments[split + 1 :]
    found = []
    for path in paths:
        target = root / path
        files = [target] if target.is_file() else [p for p in target.rglob("*") if p.is_file()]
        found += [f.relative_to(root).as_posix() for f in files]
    return sorted(f for f in found if not any(fnmatch.fnmatchcase(f, p) for p in patterns))


def test_the_readme_zip_command_builds_the_same_package(tmp_path: Path) -> None:
    make_tree(tmp_path, WORKING_TREE)
    assert zip_package(tmp_path, readme_zip_command()) == core_tools_package(tmp_path)


@pytest.mark.parametrize("dropped", ["tests/", ".venv/", "node_modules/", "simulators/", "bench/"])
def test_dropping_a_funcignore_line_lets_something_forbidden_in(tmp_path: Path, dropped: str) -> None:
    make_tree(tmp_path, WORKING_TREE)
    lines = (ROOT / ".funcignore").read_text().splitlines()
    assert dropped in lines
    (tmp_path / ".funcignore").write_text("\n".join(line for line in lines if line != dropped))
    assert any(MUST_NOT_HOLD.search(p) for p in core_tools_package(tmp_path))
