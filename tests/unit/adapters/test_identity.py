"""Which Azure identity the app uses: app credentials when all three are set, else the managed identity."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from azure.identity.aio import ClientSecretCredential, ManagedIdentityCredential

from provisioning.adapters.identity import azure_credential
from provisioning.settings import Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)


def choose(**settings: Any) -> object:
    credential = azure_credential(Settings(**settings))
    asyncio.run(credential.close())
    return credential


def test_app_credentials_when_all_three_are_set() -> None:
    chosen = choose(AZURE_TENANT_ID="t", AZURE_CLIENT_ID="c", AZURE_CLIENT_SECRET="s")
    assert isinstance(chosen, ClientSecretCredential)


def test_user_assigned_managed_identity_when_only_the_client_id_is_set() -> None:
    assert isinstance(choose(AZURE_CLIENT_ID="c"), ManagedIdentityCredential)
    assert isinstance(choose(AZURE_TENANT_ID="t", AZURE_CLIENT_ID="c"), ManagedIdentityCredential)


def test_system_assigned_managed_identity_otherwise() -> None:
    assert isinstance(choose(), ManagedIdentityCredential)
