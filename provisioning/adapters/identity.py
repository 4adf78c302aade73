"""Azure credentials from settings: app credentials when all three are set, otherwise the managed
identity (its client id in AZURE_CLIENT_ID for a user-assigned identity)."""

from __future__ import annotations

from typing import Any

from provisioning.settings import Settings


def azure_credential(settings: Settings) -> Any:
    """An async azure-identity credential; the caller closes it."""
    from azure.identity.aio import ClientSecretCredential, ManagedIdentityCredential

    secret = settings.azure_client_secret
    if settings.azure_tenant_id and settings.azure_client_id and secret:
        # A national cloud's tenant signs in at its own host (the managed identity needs none: IMDS).
        authority = {"authority": settings.authority_host} if settings.authority_host else {}
        return ClientSecretCredential(
            settings.azure_tenant_id, settings.azure_client_id, secret.get_secret_value(), **authority
        )
    if settings.azure_client_id:
        return ManagedIdentityCredential(client_id=settings.azure_client_id)
    return ManagedIdentityCredential()
