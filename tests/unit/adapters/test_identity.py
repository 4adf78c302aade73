"""Which Azure identity the app uses: app credentials when all three are set, else the managed identity."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
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


def test_the_command_line_signs_in_as_the_admin_with_az_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An admin's laptop has no managed identity; Table Storage takes Entra sign-in only: ``status``
    against the deployed state uses their ``az login`` (a stub ``az`` here, on PATH, answering as the
    real one does)."""
    from provisioning.adapters.identity import signed_in_user_first

    stub = tmp_path / "az"
    stub.write_text(
        "#!/bin/sh\n"
        'echo "$@" >> "$(dirname "$0")/calls"\n'
        'echo \'{"accessToken": "admin-token", "expiresOn": "2099-01-01 00:00:00.000000", '
        '"expires_on": 4070908800, "tokenType": "Bearer"}\'\n'
    )
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")

    async def token() -> str:
        credential = azure_credential(Settings(AZURE_TENANT_ID="contoso-tenant"))
        try:
            return str((await credential.get_token("https://storage.azure.com/.default")).token)
        finally:
            await credential.close()

    with signed_in_user_first():
        assert asyncio.run(token()) == "admin-token"
    assert "--tenant contoso-tenant" in (tmp_path / "calls").read_text()
    assert isinstance(choose(), ManagedIdentityCredential)  # outside the command line: never az
