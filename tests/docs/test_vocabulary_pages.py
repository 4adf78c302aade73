"""The pages that list a closed vocabulary of the code list exactly that vocabulary: the ``status`` problem
codes (docs/operating.md), the kinds of queue work (docs/architecture.md), and the state schema version
(docs/upgrading.md)."""

from __future__ import annotations

import ast
import inspect
import re

from provisioning.adapters.state import sqlite
from provisioning.domain import health, work
from tests.docs.pages import DOCS, section, tables


def problem_codes() -> set[str]:
    """The codes health.py gives its problems: the constant named first in every ``Problem(...)``."""
    tree = ast.parse(inspect.getsource(health))
    names = {
        node.args[0].id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "Problem"
        and node.args
        and isinstance(node.args[0], ast.Name)
    }
    return {getattr(health, name) for name in names}


def first_column(text: str, title: str) -> list[str]:
    (table,) = tables(section(text, title))
    return [cell for row in table[1:] for cell in re.findall(r"`([^`]+)`", row[0])]


def test_the_status_codes_are_those_of_the_health_rule() -> None:
    codes = first_column((DOCS / "operating.md").read_text(), "Health at a glance: `status`")
    assert len(problem_codes()) >= 10  # the rule was read
    assert sorted(codes) == sorted(problem_codes())


def test_the_work_vocabulary_is_the_queue_s() -> None:
    kinds = first_column((DOCS / "architecture.md").read_text(), "The work vocabulary")
    assert sorted(kinds) == sorted(work.KINDS)


def test_the_schema_version_is_the_state_store_s() -> None:
    said = re.search(r"now schema (\d+)", (DOCS / "upgrading.md").read_text())
    assert said and int(said.group(1)) == sqlite.SCHEMA_VERSION
