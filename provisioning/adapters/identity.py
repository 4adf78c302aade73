"""Azure credentials from settings: app credentials when all three are set, otherwise the managed
identity (its client id in AZURE_CLIENT_ID for a user-assigned identity).

The command line may run where there is no managed identity: an admin's laptop reading the deployed
state (``status``, ``mode``, ``sync --dry-run``), where Table Storage takes Entra sign-in only. There it
uses the admin's own Azure CLI sign-in (``az login``) first and the managed identity after (Azure Cloud
Shell has both). The functions never do: in Azure they are the managed identity and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from provisioning.settings import Settings

_SIGNED_IN_USER: ContextVar[bool] = ContextVar("signed_in_user", default=False)


@contextmanager
def signed_in_user_first() -> Iterator[None]:
    """The command line's choice, for what it runs inside: the admin's ``az login`` before the managed
    identity."""
    token = _SIGNED_IN_USER.set(True)
    try:
        yield
    finally:
        _SIGNED_IN_USER.reset(token)


def azure_credential(settings: Settings) -> Any:
    """An async azure-identity credential; the caller closes it."""
    from azure.identity.aio import (
        AzureCliCredential,
        ChainedTokenCredential,
        ClientSecretCredential,
        ManagedIdentityCredential,
    )

    secret = settings.azure_client_secret
    if settings.azure_tenant_id and settings.azure_client_id and secret:
        # A national cloud's tenant signs in at its own host (the managed identity needs none: IMDS).
        authority = {"authority": settings.authority_host} if settings.authority_host else {}
        return ClientSecretCredential(
            settings.azure_tenant_id, settings.azure_client_id, secret.get_secret_value(), **authority
        )
    managed = (
        ManagedIdentityCredential(client_id=settings.azure_client_id)
        if settings.azure_client_id
        else ManagedIdentityCredential()
    )
    if not _SIGNED_IN_USER.get():
        return managed
    # Tried in turn; one that cannot be had here (no az, no IMDS) steps aside for the next.
    user = (
        AzureCliCredential(tenant_id=settings.azure_tenant_id)
        if settings.azure_tenant_id
        else AzureCliCredential()
    )
    return ChainedTokenCredential(user, managed)
