"""The layers, enforced: the domain imports only the standard library and itself; services import no
adapters; adapters import no services; entry points reach the adapters only through ``bootstrap``, the
composition root. A forbidden import anywhere in ``provisioning/`` fails this test, naming the file."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "provisioning"


def imports(source: str) -> Iterator[str]:
    """Every module a source imports, absolute; inside functions too (a lazy import is still one)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def layer_of(path: Path, root: Path) -> str:
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else path.stem


def problem(layer: str, module: str) -> str | None:
    """Why ``layer`` may not import ``module``, or None."""
    top = module.split(".", maxsplit=1)[0]
    if layer == "domain" and not (top in sys.stdlib_module_names or module.startswith("provisioning.domain")):
        return "the domain imports only the standard library and itself"
    if layer == "service" and module.startswith("provisioning.adapters"):
        return "services import no adapters (ports.py says what they need)"
    if layer == "adapters" and module.startswith(("provisioning.service", "provisioning.entrypoints")):
        return "adapters import no services or entry points"
    if layer == "entrypoints" and module.startswith("provisioning.adapters"):
        return "entry points reach the adapters through bootstrap only"
    return None


def violations(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        layer = layer_of(path, root)
        for module in imports(path.read_text()):
            why = problem(layer, module)
            if why:
                found.append(f"{path.relative_to(root.parent)} imports {module}: {why}")
    return found


def test_every_module_keeps_to_its_layer() -> None:
    assert violations(PACKAGE) == []


@pytest.mark.parametrize(
    ("where", "line"),
    [
        ("domain/planner.py", "import httpx"),
        ("domain/planner.py", "from provisioning.service.sync import run_sync"),
        ("service/sync.py", "from provisioning.adapters.state.sqlite import SqliteStateStore"),
        ("adapters/druva/client.py", "from provisioning.service.report import RunReport"),
        ("entrypoints/cli.py", "def f():\n    from provisioning.adapters.clock import SystemClock"),
    ],
)
def test_a_forbidden_import_is_caught(tmp_path: Path, where: str, line: str) -> None:
    root = tmp_path / "provisioning"
    module = root / where
    module.parent.mkdir(parents=True)
    module.write_text(f"{line}\n")
    assert len(violations(root)) == 1
