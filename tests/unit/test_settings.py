from pathlib import Path

import pytest

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


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in NAMES:
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
