"""docs/settings.md lists exactly the settings the code reads: every name ``Settings`` reads (its fields'
``validation_alias``, as tests/unit/entrypoints/test_local_settings.py derives them) and the few that
only the Functions Python worker reads, each in one table row; and it names exactly the secrets the
redaction step masks."""

from __future__ import annotations

import re

from provisioning import redaction
from provisioning.settings import Settings
from tests.docs.pages import DOCS, section, tables

PAGE = DOCS / "settings.md"
SETTINGS_NAMES = {str(field.validation_alias) for field in Settings.model_fields.values()}
# Read by the Functions Python worker itself, not by the app's code: the Bicep sets them
# (infra/main.bicep, app settings) so that the worker exports the app's telemetry.
WORKER_SETTINGS = {"PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY", "PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME"}
NAME = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`")


def documented_settings(text: str) -> list[str]:
    """The names in the first column of every settings table (a table whose first header is ``name``)."""
    names: list[str] = []
    for table in tables(text):
        if table[0][0] == "name":
            for row in table[1:]:
                names += NAME.findall(row[0])
    return names


def documented_secrets(text: str) -> set[str]:
    body = section(text, "Secrets and how settings are checked")
    listed = re.search(r"masks each secret setting \(([^)]*)\)", body)
    assert listed, "the page does not list the secret settings"
    return set(NAME.findall(listed.group(1)))


def problems(text: str) -> list[str]:
    found: list[str] = []
    names = documented_settings(text)
    expected = SETTINGS_NAMES | WORKER_SETTINGS
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        found.append(f"listed more than once: {twice}")
    if set(names) - expected:
        found.append(f"listed, but nothing reads them: {sorted(set(names) - expected)}")
    if expected - set(names):
        found.append(f"read, but not listed: {sorted(expected - set(names))}")
    secrets = documented_secrets(text)
    if secrets != set(redaction.SECRET_SETTINGS):
        found.append(f"secrets named {sorted(secrets)}, masked {sorted(redaction.SECRET_SETTINGS)}")
    return found


def test_the_settings_page_lists_what_the_code_reads() -> None:
    assert problems(PAGE.read_text()) == []


def test_the_worker_settings_are_not_read_by_the_app_itself() -> None:
    # If Settings started reading one of these, it would belong to SETTINGS_NAMES, not here.
    assert not WORKER_SETTINGS & SETTINGS_NAMES
    assert "GRAPH_API_URL" in SETTINGS_NAMES and "ServiceBusConnection" in SETTINGS_NAMES


def test_a_page_that_drifts_from_the_code_is_caught() -> None:
    text = PAGE.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `DRUVA_MAX_CONCURRENCY` |"))
    assert problems(text.replace(row + "\n", ""))  # a setting the code reads, missing
    assert problems(text.replace(row, row + "\n" + row.replace("DRUVA_MAX_CONCURRENCY", "DRUVA_TIMEOUT")))
    assert problems(text.replace(row, row + "\n" + row))  # the same setting twice
    assert problems(text.replace("`GRAPH_ACCESS_TOKEN`, `AZURE_CLIENT_SECRET`,", "`AZURE_CLIENT_SECRET`,", 1))
