"""What a deployment gets wrong before any code runs: unresolved Key Vault references, missing Graph
permissions. Each is refused or reported by name, with what to fix, and never with a secret's value."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import ValidationError

from provisioning.entrypoints.functions import runtime
from provisioning.service.context import Services
from provisioning.service.doctor import subscription_permissions
from provisioning.service.subscriptions import Endpoint
from provisioning.settings import Settings
from tests.unit.entrypoints import test_cli
from tests.unit.entrypoints.test_cli import invoke
from tests.unit.service.test_sync import World

world, config = test_cli.world, test_cli.config  # the command-line tests' fixtures
REFERENCE = "@Microsoft.KeyVault(SecretUri=https://kv-prov-abc.vault.azure.net/secrets/graph-client-state/)"
SECRET_SETTINGS = [
    "GRAPH_CLIENT_STATE",
    "GRAPH_CLIENT_STATE_PREVIOUS",
    "DRUVA_CLIENT_SECRET",
    "GRAPH_ACCESS_TOKEN",
]


@pytest.mark.parametrize("name", [*SECRET_SETTINGS, "DRUVA_CLIENT_ID", "GRAPH_NOTIFICATION_URL"])
@pytest.mark.parametrize("value", [REFERENCE, "  @microsoft.keyvault (VaultName=kv;SecretName=x)"])
def test_an_unresolved_reference_is_refused_naming_the_setting_not_its_value(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as raised:
        Settings()
    messages = [e["msg"] for e in raised.value.errors()]
    assert len(messages) == 1 and name in messages[0] and "Key Vault" in messages[0]
    assert "vault.azure.net" not in messages[0] and "VaultName" not in messages[0]


def test_a_secret_that_merely_mentions_key_vault_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPH_CLIENT_STATE", "x@Microsoft.KeyVault(")
    assert Settings().client_states == ["x@Microsoft.KeyVault("]


def test_the_functions_fail_loudly_without_quoting_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPH_CLIENT_STATE", REFERENCE)
    runtime.reset()
    try:
        with pytest.raises(runtime.SettingsRefused) as raised:
            runtime.settings()
        assert "GRAPH_CLIENT_STATE" in str(raised.value) and "restart" in str(raised.value)
        assert "vault.azure.net" not in str(raised.value) and raised.value.__cause__ is None
        with pytest.raises(runtime.SettingsRefused):  # every invocation, not just the first
            runtime.endpoint()
    finally:
        runtime.reset()


def test_doctor_says_which_setting_to_fix(
    world: World, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRUVA_CLIENT_SECRET", REFERENCE)
    code, out, err = invoke("doctor", "--config", str(config))
    assert code == 2
    assert "DRUVA_CLIENT_SECRET" in err and "Key Vault Secrets User" in err
    assert "vault.azure.net" not in out + err


ENDPOINT = Endpoint("https://app.example/api/graph/notifications", None, "s3cret")


def permissions(world: World, endpoint: Endpoint | None) -> dict[str, tuple[bool, str]]:
    services = Services(world.directory, world.druva, world.state, world.clock)
    probes = asyncio.run(subscription_permissions(services, endpoint))
    return {p.check.split()[0]: (p.ok, p.detail) for p in probes}


def test_doctor_reads_the_roles_claim_and_names_a_missing_permission(world: World) -> None:
    world.directory.roles = frozenset({"User.Read.All", "GroupMember.Read.All", "MailboxSettings.Read"})
    found = permissions(world, ENDPOINT)
    assert found["users"][0] is True
    assert found["groups"] == (False, "missing application permission Group.Read.All")
    assert world.directory.calls["create_subscription"] == 0  # the claim was enough


def test_doctor_accepts_a_broader_role(world: World) -> None:
    world.directory.roles = frozenset({"Directory.Read.All"})
    assert all(ok for ok, _ in permissions(world, None).values())


def test_without_a_roles_claim_doctor_tries_a_subscription_and_deletes_it(world: World) -> None:
    found = permissions(world, ENDPOINT)
    assert all(ok and "deleted again" in detail for ok, detail in found.values())
    assert world.directory.calls["create_subscription"] == 2 and world.directory.subscriptions == {}


def test_without_claim_or_webhook_doctor_says_it_did_not_check(world: World) -> None:
    found = permissions(world, None)
    assert all("not checked" in detail for _, detail in found.values())
    assert world.directory.calls["create_subscription"] == 0
