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
]
TABLE_NAMES = ["PROVISIONING_TABLE_CONNECTION_STRING", "PROVISIONING_TABLE_ENDPOINT"]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in NAMES + TABLE_NAMES:
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
    monkeypatch.setenv("GRAPH_ACCESS_TOKEN", "  ")
    assert Settings().graph_access_token is None


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
    monkeypatch.setenv("PROVISIONING_TABLE_CONNECTION_STRING", "AccountName=acct;AccountKey=sekr1tkey")
    text = repr(Settings()) + str(Settings())
    assert "sekr1tkey" not in text


def test_a_table_endpoint_must_be_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISIONING_TABLE_ENDPOINT", "acct.table.core.windows.net")
    with pytest.raises(ValidationError, match="PROVISIONING_TABLE_ENDPOINT"):
        Settings()
