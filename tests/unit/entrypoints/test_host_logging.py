"""The SDKs' INFO chatter (request headers, token fetches, retries) stays out of Application Insights;
their warnings and errors, and the app's own INFO lines, do not."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from provisioning.entrypoints import functions

HOST = json.loads((Path(__file__).resolve().parents[3] / "host.json").read_text())


def test_host_json_keeps_the_host_at_warning_and_the_functions_at_information() -> None:
    levels = HOST["logging"]["logLevel"]
    assert levels["default"] == "Warning"
    assert levels["Function"] == "Information"  # the app's own lines (and the worker's, filtered below)
    assert levels["Host.Results"] == "Information"  # invocation results feed the Functions monitor


@pytest.mark.parametrize(
    "name",
    [
        "azure.core.pipeline.policies.http_logging_policy",
        "azure.identity",
        "azure.servicebus",
        "azure.data.tables",
        "msal",
        "httpx",
    ],
)
def test_sdk_loggers_pass_warnings_but_not_info(name: str) -> None:
    assert "azure" in functions.SDK_LOGGERS
    logger = logging.getLogger(name)
    assert not logger.isEnabledFor(logging.INFO)
    assert logger.isEnabledFor(logging.WARNING)


def test_the_apps_own_logger_is_not_silenced() -> None:
    assert logging.getLogger("provisioning").level == logging.NOTSET  # it follows the host's level
    assert not any(name.startswith("provisioning") for name in functions.SDK_LOGGERS)
