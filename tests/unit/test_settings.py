from pathlib import Path

import pytest
from pydantic import ValidationError

from provisioning.settings import Settings

NAMES = [
    "GRAPH_API_URL",
    "GRAPH_ACCESS_TOKEN",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "DRUVA_API_URL",
    "DRUVA_CLIENT_ID",
    "DRUVA_CLIENT_SECRET",
    "PROVISIONING_STATE",
    "PROVISIONING_CONFIG",
    "AZURE_AUTHORITY_HOST",
]
TABLE_NAMES = ["PROVISIONING_TABLE_CONNECTION_STRING", "PROVISIONING_TABLE_ENDPOINT"]
SERVICE_BUS_NAMES = ["ServiceBusConnection", "ServiceBusConnection__fullyQualifiedNamespace"]
EMULATOR = (
    "Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;"
    "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in NAMES + TABLE_NAMES + SERVICE_BUS_NAMES:
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    settings = Settings()
    assert settings.graph_api_url == "https://graph.microsoft.com/v1.0"
    assert settings.druva_api_url == "https://apis.druva.com"
    assert settings.provisioning_state == Path(".provisioning")
    assert settings.graph_access_token is None
    assert settings.provisioning_config is None


def test_reads_exactly_the_documented_names(monkeypatch: pytest.MonkeyPatch) -> None:
    values = dict.fromkeys(NAMES, "x")
    values |= {
        "GRAPH_API_URL": "http://127.0.0.1:9/v1.0/",
        "DRUVA_API_URL": "http://127.0.0.1:8",
        "PROVISIONING_STATE": "/tmp/state",
        "PROVISIONING_CONFIG": "/tmp/m.yaml",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.graph_api_url == "http://127.0.0.1:9/v1.0"  # trailing slash dropped
    assert settings.druva_api_url == "http://127.0.0.1:8"
    assert (
        settings.azure_tenant_id == "x"
        and settings.azure_client_id == "x"
        and settings.druva_client_id == "x"
    )
    assert settings.provisioning_state == Path("/tmp/state")
    assert settings.provisioning_config == Path("/tmp/m.yaml")
    assert settings.druva_client_secret is not None and settings.druva_client_secret.get_secret_value() == "x"


def test_secrets_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRUVA_CLIENT_SECRET", "hunter2-very-secret")
    monkeypatch.setenv("GRAPH_ACCESS_TOKEN", "eyJ-token")
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "azure-secret")
    text = repr(Settings()) + str(Settings())
    assert "hunter2" not in text and "eyJ-token" not in text and "azure-secret" not in text


def test_blank_secret_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    # A blank credential that would be used is refused instead (test_settings_checked_up_front.py).
    monkeypatch.setenv("GRAPH_CLIENT_STATE_PREVIOUS", "  ")
    assert Settings().graph_client_state_previous is None


def test_state_is_sqlite_unless_a_table_setting_is_present(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not Settings().uses_table_storage
    monkeypatch.setenv("PROVISIONING_TABLE_ENDPOINT", "https://acct.table.core.windows.net/")
    settings = Settings()
    assert settings.uses_table_storage
    assert settings.provisioning_table_endpoint == "https://acct.table.core.windows.net"
    monkeypatch.setenv("PROVISIONING_TABLE_ENDPOINT", " ")
    monkeypatch.setenv("PROVISIONING_TABLE_CONNECTION_STRING", "AccountName=acct;AccountKey=c2VjcmV0")
    assert Settings().uses_table_storage and Settings().provisioning_table_endpoint is None


def test_the_table_connection_string_never_prints(monkeypatch: pytest.MonkeyPatch) -> None:
    # (a key is base64 now that the form is checked up front: "sekr1tkey" alone is refused)
    monkeypatch.setenv("PROVISIONING_TABLE_CONNECTION_STRING", "AccountName=acct;AccountKey=c2VrcjF0a2V5")
    text = repr(Settings()) + str(Settings())
    assert "c2VrcjF0a2V5" not in text


def test_a_table_endpoint_must_be_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISIONING_TABLE_ENDPOINT", "acct.table.core.windows.net")
    with pytest.raises(ValidationError, match="PROVISIONING_TABLE_ENDPOINT"):
        Settings()


def test_service_bus_is_reached_by_namespace_or_by_connection_string(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().service_bus_namespace is None and Settings().service_bus_connection_string is None
    monkeypatch.setenv("ServiceBusConnection__fullyQualifiedNamespace", "ns.servicebus.windows.net")
    assert Settings().service_bus_namespace == "ns.servicebus.windows.net"
    monkeypatch.setenv("ServiceBusConnection", EMULATOR)
    connection = Settings().service_bus_connection_string
    assert connection is not None and connection.get_secret_value() == EMULATOR
    monkeypatch.setenv("ServiceBusConnection", " ")
    assert Settings().service_bus_connection_string is None  # blank is unset, as for every secret


@pytest.mark.parametrize(
    "value",
    [
        EMULATOR,
        "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=c2VjcmV0",
        "endpoint=sb://ns.servicebus.windows.net/;sharedaccesssignature=SharedAccessSignature sr=x&sig=y",
    ],
)
def test_connection_string_forms_the_sdk_takes_are_accepted(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("ServiceBusConnection", value)
    assert Settings().service_bus_connection_string is not None


@pytest.mark.parametrize(
    "value",
    [
        "ns.servicebus.windows.net",  # a namespace put in the connection-string setting
        "Endpoint=https://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=k3yk3yk3y",
        "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKey=k3yk3yk3y",  # no key name
        "Endpoint=sb://localhost;UseDevelopmentEmulator=true",  # no key at all
        "UseDevelopmentStorage=true",  # Azurite's, in the wrong setting
    ],
)
def test_a_wrong_connection_string_is_refused_without_repeating_it(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("ServiceBusConnection", value)
    with pytest.raises(ValidationError, match="ServiceBusConnection") as raised:
        Settings()
    assert "must be a Service Bus connection string" in str(raised.value)
    assert value not in str(raised.value) and "k3yk3yk3y" not in str(raised.value)


def test_the_service_bus_connection_string_never_prints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "ServiceBusConnection",
        "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=s;SharedAccessKey=sekr1t",
    )
    text = repr(Settings()) + str(Settings())
    assert "sekr1t" not in text


# national clouds: each cloud's settings, as docs list them ---------------------------------------------
CLOUDS = [
    # GRAPH_API_URL, where its tenants sign in, the Graph token scope, DRUVA_API_URL (the same cloud)
    (
        "https://graph.microsoft.com/v1.0",
        "login.microsoftonline.com",
        "https://graph.microsoft.com/.default",
        "https://apis.druva.com",
    ),
    (
        "https://graph.microsoft.us/v1.0",
        "login.microsoftonline.us",
        "https://graph.microsoft.us/.default",
        "https://govcloudapis.druva.com",
    ),
    (
        "https://dod-graph.microsoft.us/v1.0",
        "login.microsoftonline.us",
        "https://dod-graph.microsoft.us/.default",
        "https://govcloudapis.druva.com",
    ),
    (
        "https://microsoftgraph.chinacloudapi.cn/v1.0",
        "login.chinacloudapi.cn",
        "https://microsoftgraph.chinacloudapi.cn/.default",
        "https://apis.druva.com",
    ),
]


@pytest.mark.parametrize(("graph", "authority", "scope", "druva"), CLOUDS)
def test_each_national_cloud_is_set_by_its_graph_url(
    monkeypatch: pytest.MonkeyPatch, graph: str, authority: str, scope: str, druva: str
) -> None:
    """GRAPH_API_URL alone picks the cloud: the Graph scope and the sign-in host follow; DRUVA_API_URL
    picks Druva's cloud (GovCloud for US Government)."""
    from provisioning.adapters.graph.client import graph_scope
    from provisioning.adapters.identity import azure_credential

    monkeypatch.setenv("GRAPH_API_URL", graph)
    monkeypatch.setenv("DRUVA_API_URL", druva)
    settings = Settings()
    assert settings.authority_host == authority
    assert graph_scope(settings.graph_api_url) == scope
    assert settings.druva_api_url == druva  # the token is asked for at {DRUVA_API_URL}/token
    for name, value in (("AZURE_TENANT_ID", "t"), ("AZURE_CLIENT_ID", "c"), ("AZURE_CLIENT_SECRET", "s")):
        monkeypatch.setenv(name, value)
    credential = azure_credential(Settings())
    # Where azure-identity (pinned in requirements.txt) will sign in: its client's authority.
    assert credential._client._authority.endswith(authority)


def test_a_sign_in_host_of_another_cloud_than_graphs_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPH_API_URL", "https://graph.microsoft.us/v1.0")
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", "https://login.chinacloudapi.cn")
    with pytest.raises(ValidationError, match=r"AZURE_AUTHORITY_HOST is login\.chinacloudapi\.cn"):
        Settings()
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", "login.microsoftonline.us")  # a bare host is fine too
    assert Settings().authority_host == "login.microsoftonline.us"


@pytest.mark.parametrize("value", ["plan\n", "\tplan", " apply", "yolo", ""])
def test_the_initial_mode_is_plan_or_apply_as_written(value: str) -> None:
    with pytest.raises(ValidationError, match="PROVISIONING_INITIAL_MODE"):
        Settings(PROVISIONING_INITIAL_MODE=value)


def test_the_initial_mode_ignores_case_only() -> None:
    assert Settings(PROVISIONING_INITIAL_MODE="PLAN").provisioning_initial_mode.value == "plan"
    assert Settings().provisioning_initial_mode.value == "apply"
