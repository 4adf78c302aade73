"""Environment settings. The names are a public contract: admins' scripts and app settings use them.

Secrets are ``SecretStr``: they print as ``**********`` and never reach logs or test output.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import stat
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from provisioning.domain.golive import Mode

# App Service passes a reference it could not resolve to the app as its literal text.
_UNRESOLVED_REFERENCE = re.compile(r"^\s*@Microsoft\.(KeyVault|AppConfiguration)\s*\(", re.IGNORECASE)


class Settings(BaseSettings):
    # hide_input_in_errors: a rejected value may be a secret; errors name the setting, never its value.
    model_config = SettingsConfigDict(
        case_sensitive=False, extra="ignore", frozen=True, hide_input_in_errors=True
    )

    graph_api_url: str = Field(default="https://graph.microsoft.com/v1.0", validation_alias="GRAPH_API_URL")
    graph_access_token: SecretStr | None = Field(default=None, validation_alias="GRAPH_ACCESS_TOKEN")
    azure_tenant_id: str | None = Field(default=None, validation_alias="AZURE_TENANT_ID")
    azure_client_id: str | None = Field(default=None, validation_alias="AZURE_CLIENT_ID")
    azure_client_secret: SecretStr | None = Field(default=None, validation_alias="AZURE_CLIENT_SECRET")
    # The Entra sign-in host of a national cloud (azure-identity's own setting name). Unset: the one that
    # goes with GRAPH_API_URL's cloud (NATIONAL_CLOUDS), so a US Government or China tenant sets only
    # GRAPH_API_URL; a host that does not go with it is refused before any token is asked for.
    azure_authority_host: str | None = Field(default=None, validation_alias="AZURE_AUTHORITY_HOST")
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
    # The queue's connection, named as the Functions host names it (the trigger reads the same setting):
    # the namespace with the app's Azure identity in Azure, or a connection string (a secret), such as the
    # Service Bus emulator's with UseDevelopmentEmulator=true. The connection string wins if both are set.
    service_bus_namespace: str | None = Field(
        default=None, validation_alias="ServiceBusConnection__fullyQualifiedNamespace"
    )
    service_bus_connection_string: SecretStr | None = Field(
        default=None, validation_alias="ServiceBusConnection"
    )
    provisioning_queue: str = Field(default="provisioning-work", validation_alias="PROVISIONING_QUEUE")
    provisioning_log_level: str = Field(default="WARNING", validation_alias="PROVISIONING_LOG_LEVEL")
    # The mode of a state that records none yet (domain.golive): a deployment sets plan, so it writes
    # nothing to Druva until an admin has read the plan and run `mode apply`; the command line applies.
    provisioning_initial_mode: Mode = Field(default=Mode.APPLY, validation_alias="PROVISIONING_INITIAL_MODE")

    @property
    def client_states(self) -> list[str]:
        """Accepted webhook secrets, current first."""
        return [
            s.get_secret_value() for s in (self.graph_client_state, self.graph_client_state_previous) if s
        ]

    @field_validator("*", mode="before")
    @classmethod
    def _no_unresolved_reference(cls, value: object, info: ValidationInfo) -> object:
        # Taken as a secret, "@Microsoft.KeyVault(SecretUri=...)" would be a guessable clientState or a
        # Druva secret that fails later and far away. The message names the setting, never its value.
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(text, str) and _UNRESOLVED_REFERENCE.match(text):
            name = cls.model_fields[str(info.field_name)].validation_alias
            raise ValueError(
                f"{name} is still a Key Vault reference that App Service could not resolve. Check that "
                "the secret exists in the vault, that the app's identity holds Key Vault Secrets User on "
                "it (infra/scripts/check-deployment.sh shows every reference's status); then restart the app"
            )
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _no_control_characters(cls, value: object) -> object:
        # A token ending in a newline becomes an illegal HTTP header whose error text echoes the token.
        if isinstance(value, str) and _CONTROL.search(value):
            raise ValueError("contains a control character (a newline or similar); the value is not shown")
        return value

    @field_validator("graph_api_url", "druva_api_url")
    @classmethod
    def _service_url(cls, url: str) -> str:
        # httpx and msgraph both join paths; a trailing slash would give "//users/delta()".
        return _checked_url(url).rstrip("/")

    @field_validator("graph_notification_url", "graph_lifecycle_url")
    @classmethod
    def _optional_url(cls, url: str | None) -> str | None:
        return None if url is None else _checked_url(url)

    @field_validator("azure_authority_host")
    @classmethod
    def _authority_host(cls, host: str | None) -> str | None:
        if host is None or not host.strip():
            return None
        text = host.strip()
        return urlsplit(_checked_url(text if "://" in text else f"https://{text}")).hostname

    @model_validator(mode="after")
    def _one_cloud(self) -> Settings:
        graph = urlsplit(self.graph_api_url).hostname or ""
        expected = NATIONAL_CLOUDS.get(graph)
        if expected and self.azure_authority_host and self.azure_authority_host != expected[1]:
            raise ValueError(
                f"AZURE_AUTHORITY_HOST is {self.azure_authority_host}, but GRAPH_API_URL is {expected[0]}'s "
                f"Graph ({graph}), whose tenants sign in at {expected[1]}: set both for one cloud"
            )
        return self

    @property
    def authority_host(self) -> str | None:
        """Where app credentials sign in: AZURE_AUTHORITY_HOST, else the host of GRAPH_API_URL's cloud,
        else None (azure-identity's default, the global cloud)."""
        if self.azure_authority_host:
            return self.azure_authority_host
        cloud = NATIONAL_CLOUDS.get(urlsplit(self.graph_api_url).hostname or "")
        return cloud[1] if cloud else None

    @field_validator("provisioning_initial_mode", mode="before")
    @classmethod
    def _initial_mode(cls, mode: object) -> object:
        if isinstance(mode, str):
            name = mode.lower()  # no blank or control character around it: a value is taken as written
            if name not in {m.value for m in Mode}:
                raise ValueError(f"must be one of {', '.join(m.value for m in Mode)}")
            return name
        return mode

    @field_validator("provisioning_log_level")
    @classmethod
    def _log_level(cls, level: str) -> str:
        name = level.strip().upper()
        if name not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return name

    @field_validator(
        "graph_access_token",
        "azure_client_secret",
        "druva_client_secret",
        "graph_client_state",
        "graph_client_state_previous",
        "provisioning_table_connection_string",
        "provisioning_table_endpoint",
        "service_bus_connection_string",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object, info: ValidationInfo) -> object:
        """Blank means unset (local.settings.example.json leaves the settings it does not use ""), except
        for a credential the other settings select: that one, left blank, would silently become another
        way in (a token that `$(az ...)` failed to fetch, a secret lost in a copy), so it is refused."""
        if not (isinstance(value, str) and not value.strip()):
            return value
        refused = _blank_credential(str(info.field_name), info.data)
        if refused:
            raise ValueError(refused)
        return None

    @field_validator("provisioning_table_endpoint")
    @classmethod
    def _table_endpoint_is_a_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        if not url.startswith("https://"):
            # The endpoint is reached with the app's Azure identity, and the Azure SDK sends a token over
            # TLS only: an http:// endpoint would fail at the first request, far from this setting.
            raise ValueError(
                "must be the account's table endpoint over TLS, e.g. "
                "https://<account>.table.core.windows.net (for Azurite over http://, set "
                "PROVISIONING_TABLE_CONNECTION_STRING instead)"
            )
        return _checked_url(url).rstrip("/")

    @field_validator("provisioning_table_connection_string")
    @classmethod
    def _table_connection_string_is_one(cls, value: SecretStr | None) -> SecretStr | None:
        # Checked here, so a wrong value stops the command with the expected form, not with the SDK's
        # "malformed" error at the first use; the message never repeats the value.
        if value is not None:
            problem = table_connection_string_problem(value.get_secret_value())
            if problem:
                raise ValueError(
                    f"{problem}; expected AccountName=<account>;AccountKey=<key>[;EndpointSuffix=<suffix>], "
                    "TableEndpoint=<url>;SharedAccessSignature=<sas>, or UseDevelopmentStorage=true (Azurite)"
                )
        return value

    @field_validator("service_bus_connection_string")
    @classmethod
    def _service_bus_connection_string_is_one(cls, value: SecretStr | None) -> SecretStr | None:
        # Checked here, once, so a wrong value stops the app at start-up with a reason, not at the first
        # notification; the message describes the form and never repeats the value.
        if value is None:
            return None
        pairs = (part.partition("=") for part in value.get_secret_value().split(";"))
        keys = {key.strip().lower(): item.strip() for key, sep, item in pairs if sep}
        signed = {"sharedaccesskeyname", "sharedaccesskey"} <= keys.keys() or "sharedaccesssignature" in keys
        if not keys.get("endpoint", "").startswith("sb://") or not signed:
            raise ValueError(
                "must be a Service Bus connection string: Endpoint=sb://<namespace>/;SharedAccessKeyName="
                "<policy>;SharedAccessKey=<key> (the emulator's ends with ;UseDevelopmentEmulator=true), "
                "or leave it unset and set ServiceBusConnection__fullyQualifiedNamespace"
            )
        return value

    @property
    def uses_table_storage(self) -> bool:
        """State in Table Storage when either table setting is present, otherwise the embedded SQLite file."""
        return (
            self.provisioning_table_connection_string is not None
            or self.provisioning_table_endpoint is not None
        )


# Each credential: the settings that select it when all of them are set (GRAPH_ACCESS_TOKEN is selected
# by being present at all), and what signs in when it is removed. Selected but blank, it is refused.
_CREDENTIALS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "graph_access_token": ((), "the Azure identity (app credentials, or the managed identity)"),
    "azure_client_secret": (("azure_tenant_id", "azure_client_id"), "the managed identity"),
    "druva_client_secret": (("druva_client_id",), None),
}


def _blank_credential(field: str, validated: dict[str, object]) -> str | None:
    """Why ``field``, set but blank, is refused given the settings ``validated`` so far (those declared
    before it); None when it selects nothing and blank simply means unset."""
    if field not in _CREDENTIALS:
        return None
    selected_by, instead = _CREDENTIALS[field]
    if not all(validated.get(name) for name in selected_by):
        return None
    names = [str(Settings.model_fields[name].validation_alias) for name in selected_by]
    when = f"is empty while {' and '.join(names)} {'are' if len(names) > 1 else 'is'} set" if names else ""
    remove = f", or remove it to sign in with {instead}" if instead else ""
    return f"{when or 'is set but empty'}: give its value{remove}"


def table_connection_string_problem(text: str) -> str | None:
    """What keeps ``text`` from being a Table Storage connection string the SDK accepts, or None. Parsed
    as azure-core parses it; never quotes a value (the account key is one)."""
    from azure.core.utils import parse_connection_string

    if text.strip().rstrip(";").lower() == "usedevelopmentstorage=true":
        return None
    try:
        parts = parse_connection_string(text)
    except ValueError:
        return "is not a list of Key=value pairs separated by ';'"
    if "sharedaccesssignature" not in parts and not {"accountname", "accountkey"} <= parts.keys():
        return "has neither AccountName with AccountKey nor a SharedAccessSignature"
    if "accountkey" in parts and not _is_base64(parts["accountkey"]):
        return "has an AccountKey that is not base64 (copy the key again)"
    if "tableendpoint" not in parts and "accountname" not in parts:
        return "has no TableEndpoint (a SharedAccessSignature needs one)"
    if "tableendpoint" in parts:
        try:
            _checked_url(parts["tableendpoint"])
        except ValueError as error:
            return f"has a TableEndpoint that {error}"
    return None


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except ValueError:
        return False
    return True


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Graph host → (the cloud, its Entra sign-in host): learn.microsoft.com/graph/deployments.
NATIONAL_CLOUDS = {
    "graph.microsoft.com": ("the global cloud", "login.microsoftonline.com"),
    "graph.microsoft.us": ("US Government L4 (GCC High)", "login.microsoftonline.us"),
    "dod-graph.microsoft.us": ("US Government L5 (DoD)", "login.microsoftonline.us"),
    "microsoftgraph.chinacloudapi.cn": ("China (21Vianet)", "login.chinacloudapi.cn"),
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _checked_url(url: str) -> str:
    """An http(s) URL with a host and a valid port, or a ValueError that says which part is wrong."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port  # raises for a port that is not a number or out of 0..65535
    except ValueError as error:
        raise ValueError(f"is not a valid URL ({error})") from None
    if parts.scheme not in ("https", "http"):
        raise ValueError("must start with https:// (or http:// for a local simulator)")
    if not parts.hostname:
        raise ValueError("has no host name")
    if port == 0:
        raise ValueError("port 0 is not a usable port")
    return url.strip()


def log_level(settings: Settings) -> int:
    return int(logging.getLevelName(settings.provisioning_log_level))


def state_folder_problem(settings: Settings, *, writing: bool) -> str | None:
    """Why the embedded state folder cannot be used, or None. A dry run may not write it at all."""
    if settings.uses_table_storage:
        return None
    folder = settings.provisioning_state
    try:
        mode: int | None = folder.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None  # not there yet: created by the first sync, under the nearest folder that exists
    except OSError as error:  # a symbolic-link loop, a folder above that this user may not enter
        return f"cannot be used ({error.strerror or error})"
    if mode is not None and not stat.S_ISDIR(mode):
        return "is a file, not a folder"
    if not writing:
        return None
    existing = next((p for p in (folder, *folder.absolute().parents) if _mode(p) is not None), None)
    if existing is None or not stat.S_ISDIR(_mode(existing) or 0):
        return "has no folder above it that exists"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot be written ({'it' if existing == folder else existing} is not writable)"
    return None


def _mode(path: Path) -> int | None:
    try:
        return path.stat().st_mode
    except OSError:
        return None
