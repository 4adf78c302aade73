"""Environment settings. The names are a public contract: admins' scripts and app settings use them.

Secrets are ``SecretStr``: they print as ``**********`` and never reach logs or test output.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    graph_api_url: str = Field(default="https://graph.microsoft.com/v1.0", validation_alias="GRAPH_API_URL")
    graph_access_token: SecretStr | None = Field(default=None, validation_alias="GRAPH_ACCESS_TOKEN")
    azure_tenant_id: str | None = Field(default=None, validation_alias="AZURE_TENANT_ID")
    azure_client_id: str | None = Field(default=None, validation_alias="AZURE_CLIENT_ID")
    azure_client_secret: SecretStr | None = Field(default=None, validation_alias="AZURE_CLIENT_SECRET")
    druva_api_url: str = Field(default="https://apis.druva.com", validation_alias="DRUVA_API_URL")
    druva_client_id: str | None = Field(default=None, validation_alias="DRUVA_CLIENT_ID")
    druva_client_secret: SecretStr | None = Field(default=None, validation_alias="DRUVA_CLIENT_SECRET")
    # The most requests one Druva client keeps in flight; it adapts below this to what Druva allows.
    druva_max_concurrency: int = Field(default=16, ge=1, le=256, validation_alias="DRUVA_MAX_CONCURRENCY")
    provisioning_state: Path = Field(default=Path(".provisioning"), validation_alias="PROVISIONING_STATE")
    provisioning_config: Path | None = Field(default=None, validation_alias="PROVISIONING_CONFIG")
    # Table Storage instead of the embedded SQLite file: a connection string (Azurite, or an account key),
    # or the account's table endpoint reached with the managed identity. Either one selects Table Storage.
    provisioning_table_connection_string: SecretStr | None = Field(
        default=None, validation_alias="PROVISIONING_TABLE_CONNECTION_STRING"
    )
    provisioning_table_endpoint: str | None = Field(
        default=None, validation_alias="PROVISIONING_TABLE_ENDPOINT"
    )

    # The event-driven path in Azure (Functions): where Graph delivers, the secret it echoes back
    # (two during a rotation), and the queue between the webhook and the worker.
    graph_notification_url: str | None = Field(default=None, validation_alias="GRAPH_NOTIFICATION_URL")
    graph_lifecycle_url: str | None = Field(default=None, validation_alias="GRAPH_LIFECYCLE_URL")
    graph_client_state: SecretStr | None = Field(default=None, validation_alias="GRAPH_CLIENT_STATE")
    graph_client_state_previous: SecretStr | None = Field(
        default=None, validation_alias="GRAPH_CLIENT_STATE_PREVIOUS"
    )
    service_bus_namespace: str | None = Field(
        default=None, validation_alias="ServiceBusConnection__fullyQualifiedNamespace"
    )
    provisioning_queue: str = Field(default="provisioning-work", validation_alias="PROVISIONING_QUEUE")

    @property
    def client_states(self) -> list[str]:
        """Accepted webhook secrets, current first."""
        return [
            s.get_secret_value() for s in (self.graph_client_state, self.graph_client_state_previous) if s
        ]

    @field_validator("graph_api_url", "druva_api_url")
    @classmethod
    def _no_trailing_slash(cls, url: str) -> str:
        # httpx and msgraph both join paths; a trailing slash would give "//users/delta()".
        return url.rstrip("/")

    @field_validator(
        "graph_access_token",
        "azure_client_secret",
        "druva_client_secret",
        "graph_client_state",
        "graph_client_state_previous",
        "provisioning_table_connection_string",
        "provisioning_table_endpoint",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("provisioning_table_endpoint")
    @classmethod
    def _table_endpoint_is_a_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        if not url.startswith(("https://", "http://")):
            example = "https://<account>.table.core.windows.net"
            raise ValueError(f"must be the account's table endpoint, e.g. {example} (got {url!r})")
        return url.rstrip("/")

    @property
    def uses_table_storage(self) -> bool:
        """State in Table Storage when either table setting is present, otherwise the embedded SQLite file."""
        return (
            self.provisioning_table_connection_string is not None
            or self.provisioning_table_endpoint is not None
        )
