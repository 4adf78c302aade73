"""``local.settings.example.json`` (Core Tools, Azurite, the Service Bus emulator) against ``Settings``, and
the queue the Functions runtime builds from either Service Bus connection form."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioning.adapters.queue.servicebus import ServiceBusQueue
from provisioning.config import ConfigError
from provisioning.entrypoints.functions import runtime
from provisioning.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[3] / "local.settings.example.json"
# What the Functions host itself reads: the worker's language and its own storage (timer leases, keys).
HOST_SETTINGS = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage"}
SETTINGS_NAMES = {str(field.validation_alias) for field in Settings.model_fields.values()}


def example_values() -> dict[str, str]:
    document = json.loads(EXAMPLE.read_text())
    assert document["IsEncrypted"] is False  # Core Tools reads plain values only when this is false
    values: dict[str, str] = document["Values"]
    assert all(isinstance(value, str) for value in values.values())  # app settings are strings
    return values


@pytest.fixture
def example_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The environment Core Tools gives the worker from the example (every name of Settings is in it)."""
    values = example_values()
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    runtime.reset()
    yield values
    runtime.reset()


def test_every_setting_the_app_reads_is_in_the_example() -> None:
    assert sorted(SETTINGS_NAMES - example_values().keys()) == []


def test_the_example_names_nothing_the_app_and_the_host_do_not_read() -> None:
    assert sorted(example_values().keys() - SETTINGS_NAMES - HOST_SETTINGS) == []


def test_the_example_is_a_python_app_on_azurite_and_the_service_bus_emulator(
    example_environment: dict[str, str],
) -> None:
    assert example_environment["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert example_environment["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"
    settings = Settings()
    assert settings.uses_table_storage  # state in Azurite's tables, as in Azure
    connection = settings.service_bus_connection_string
    assert connection is not None and "UseDevelopmentEmulator=true" in connection.get_secret_value()
    assert settings.graph_notification_url == "http://localhost:7071/api/graph/notifications"
    assert settings.client_states  # the webhook refuses every notification without one


def test_the_functions_runtime_sends_through_the_emulator_when_given_its_connection_string(
    example_environment: dict[str, str],
) -> None:
    assert sender_target() == "queue 'provisioning-work' on sb://localhost"


def test_the_connection_string_wins_over_the_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ServiceBusConnection__fullyQualifiedNamespace", "ns.servicebus.windows.net")
    monkeypatch.setenv("ServiceBusConnection", example_values()["ServiceBusConnection"])
    runtime.reset()
    try:
        assert sender_target().endswith("on sb://localhost")
    finally:
        runtime.reset()


def test_the_functions_runtime_uses_the_identity_form_in_azure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ServiceBusConnection", raising=False)
    monkeypatch.setenv("ServiceBusConnection__fullyQualifiedNamespace", "ns.servicebus.windows.net")
    monkeypatch.setenv("PROVISIONING_QUEUE", "work")
    runtime.reset()
    try:
        assert sender_target() == "queue 'work' on ns.servicebus.windows.net"
    finally:
        runtime.reset()


def test_without_either_form_the_runtime_says_which_settings_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ServiceBusConnection", raising=False)
    monkeypatch.delenv("ServiceBusConnection__fullyQualifiedNamespace", raising=False)
    runtime.reset()
    try:
        with pytest.raises(  # a settings problem: a human must set one (NeedsHuman, not a crash)
            ConfigError, match=r"ServiceBusConnection__fullyQualifiedNamespace.*ServiceBusConnection"
        ):
            runtime.queue()
    finally:
        runtime.reset()


def sender_target() -> str:
    sender = runtime.queue()
    assert isinstance(sender, ServiceBusQueue)
    return sender.target
