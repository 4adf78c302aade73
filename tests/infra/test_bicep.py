"""The Bicep under infra/: it parses, it honours the app-settings contract, and it is secure by default:
least privilege (a package identity apart from the runtime one, no unused role, operators' roles only on
request), SCM restricted, audit logs kept 90 days, bounded scale, a budget, and every tunable a parameter.

Each ``check_*`` function reads a parsed template and returns the problems it finds. The tests assert
that the real templates have none, and ``test_each_check_catches_its_regression`` breaks a copy of
main.bicep in one way per check and asserts that the check notices, so none of them can pass by
looking at nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.infra.bicep import (
    Declaration,
    Node,
    Template,
    key_of,
    literal,
    named,
    prop,
    properties,
    syntax_problems,
    text,
    walk,
)

INFRA = Path(__file__).resolve().parents[2] / "infra"
MAIN = INFRA / "main.bicep"
GRAPH_MODULE = INFRA / "modules" / "graph-app-roles.bicep"
PARAMS = INFRA / "example.bicepparam"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))

# The app-settings contract with provisioning/settings.py and the function bindings: exactly these.
APP_SETTINGS = {
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "ServiceBusConnection__fullyQualifiedNamespace",
    "ServiceBusConnection__credential",
    "ServiceBusConnection__clientId",
    "PROVISIONING_QUEUE",
    "PROVISIONING_TABLE_ENDPOINT",
    "PROVISIONING_CONFIG",
    "PROVISIONING_INITIAL_MODE",
    "PROVISIONING_LOG_LEVEL",
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "GRAPH_API_URL",
    "GRAPH_NOTIFICATION_URL",
    "GRAPH_LIFECYCLE_URL",
    "GRAPH_CLIENT_STATE",
    "GRAPH_CLIENT_STATE_PREVIOUS",
    "DRUVA_API_URL",
    "DRUVA_CLIENT_ID",
    "DRUVA_CLIENT_SECRET",
    "DRUVA_MAX_CONCURRENCY",
    "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY",
    "PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME",
}

# Settings that Flex Consumption rejects or ignores (functions-app-settings, "Flex Consumption plan
# deprecations"), and the key-based host storage setting that identity-based connections replace.
FORBIDDEN_SETTINGS = {
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_WORKER_RUNTIME_VERSION",
    "FUNCTIONS_EXTENSION_VERSION",
    "FUNCTIONS_MAX_HTTP_CONCURRENCY",
    "FUNCTIONS_WORKER_PROCESS_COUNT",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_CONTENTOVERVNET",
    "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "ENABLE_ORYX_BUILD",
    "WEBSITE_TIME_ZONE",
    "TZ",
    "AzureWebJobsStorage",
}

# Settings the app reads (provisioning/settings.py) that a deployment in Azure never sets: credentials
# and state for the command line and local runs, and the sign-in host of a national cloud.
LOCAL_ONLY_SETTINGS = {
    "GRAPH_ACCESS_TOKEN",
    "AZURE_CLIENT_SECRET",
    "AZURE_AUTHORITY_HOST",
    "PROVISIONING_STATE",
    "PROVISIONING_TABLE_CONNECTION_STRING",
    "ServiceBusConnection",
}

# Settings an admin may tune: each is a parameter of main.bicep (the appsettings resource replaces every
# setting on each deployment, so a setting changed by hand would be dropped by the next provision).
TUNABLES = {
    "PROVISIONING_INITIAL_MODE": ("initialMode", "plan"),
    "PROVISIONING_LOG_LEVEL": ("logLevel", "WARNING"),
    "DRUVA_MAX_CONCURRENCY": ("druvaMaxConcurrency", "16"),
    "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": ("maxRequestBodyBytes", "4194304"),
    "DRUVA_API_URL": ("druvaApiUrl", "https://apis.druva.com"),
    "DRUVA_CLIENT_ID": ("druvaClientId", None),
}

# Built-in role definition ids.
BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"  # nothing uses storage queues: never granted
TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
TABLE_DATA_READER = "76199698-9eea-4c19-bc75-cec21354c6b6"
SB_DATA_RECEIVER = "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0"
SB_DATA_SENDER = "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39"
KV_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
KEY_VAULT_SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"  # the admin's bootstrap role, on the vault
METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"

# Who gets which role, and on what: "host" and "package" are the two storage accounts.
RUNTIME_ROLES = {
    BLOB_DATA_OWNER: "host",  # AzureWebJobsStorage: host keys, leases
    TABLE_DATA_CONTRIBUTOR: "host",  # the state tables
    SB_DATA_RECEIVER: "Microsoft.ServiceBus/namespaces/queues",
    SB_DATA_SENDER: "Microsoft.ServiceBus/namespaces/queues",
    KV_SECRETS_USER: "Microsoft.KeyVault/vaults",
    METRICS_PUBLISHER: "Microsoft.Insights/components",
}
PACKAGE_ROLES = {BLOB_DATA_CONTRIBUTOR: "package"}
OPERATOR_ROLES = {
    SB_DATA_RECEIVER: "Microsoft.ServiceBus/namespaces/queues",  # dead letters
    TABLE_DATA_READER: "host",  # `python -m provisioning status`
}

# Resource logs into the workspace, by what they are about.
AUDITED = {
    "host blobs (host keys)": ("host", "Microsoft.Storage/storageAccounts/blobServices"),
    "state tables": ("host", "Microsoft.Storage/storageAccounts/tableServices"),
    "package blobs (deployments)": ("package", "Microsoft.Storage/storageAccounts/blobServices"),
    "Service Bus": (None, "Microsoft.ServiceBus/namespaces"),
    "the Function App": (None, "Microsoft.Web/sites"),
    "Key Vault": (None, "Microsoft.KeyVault/vaults"),
}
MIN_LOG_RETENTION_DAYS = 90

GRAPH_APP_ROLES = {"User.Read.All", "Group.Read.All", "MailboxSettings.Read"}
MICROSOFT_GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"

Check = Callable[[Template], list[str]]


# ----------------------------------------------------------------------------------------------------
# Syntax
# ----------------------------------------------------------------------------------------------------


def test_there_is_something_to_check() -> None:
    assert {MAIN, GRAPH_MODULE} <= set(BICEP_FILES)
    assert PARAMS.exists()


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses(path: Path) -> None:
    problems = syntax_problems(path.read_bytes())
    assert not problems, f"{path.name}: " + "; ".join(map(str, problems))


def test_parameters_file_parses() -> None:
    problems = syntax_problems(PARAMS.read_bytes(), bicepparam=True)
    assert not problems, "; ".join(map(str, problems))


BREAKAGES = {
    "closing brace removed": lambda s: s[: s.rindex("}")] + s[s.rindex("}") + 1 :],
    "string left open": lambda s: s.replace("'provisioning-work'", "'provisioning-work", 1),
    "array left open": lambda s: s.replace(
        "    monitoringMetricsPublisher\n  ]", "    monitoringMetricsPublisher\n", 1
    ),
    "property without value": lambda s: s.replace("httpsOnly: true", "httpsOnly:", 1),
    "keyword misspelt": lambda s: s.replace("resource plan ", "resorce plan ", 1),
}


@pytest.mark.parametrize("breakage", BREAKAGES, ids=str)
def test_parser_catches_a_broken_copy(breakage: str, tmp_path: Path) -> None:
    source = MAIN.read_text()
    broken = BREAKAGES[breakage](source)
    assert broken != source, "the breakage no longer applies to main.bicep; update it"
    copy = tmp_path / "main.bicep"
    copy.write_text(broken)
    assert syntax_problems(copy.read_bytes()), f"{breakage}: the parser accepted a broken template"


def test_extension_workaround_is_narrow() -> None:
    """Only ``extension <alias>`` lines are hidden from the grammar, only where the Graph resources
    are, and only for aliases that bicepconfig.json resolves to the Microsoft Graph extension."""
    config = json.loads((INFRA / "bicepconfig.json").read_text())
    registry = config["extensions"]
    for path in BICEP_FILES:
        template = Template(path)
        uses_graph = any(r.resource_type.startswith("Microsoft.Graph/") for r in template.resources.values())
        assert bool(template.extensions) == uses_graph, path.name
        for alias in template.extensions:
            assert alias in registry, f"{path.name}: extension {alias} is not declared in bicepconfig.json"
            assert registry[alias].startswith("br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:")
    # An extension line that is not a bare alias is left to the grammar, which rejects it.
    assert syntax_problems(b"extension microsoftGraphV1 with { x: 1 }\n")


# ----------------------------------------------------------------------------------------------------
# Helpers over main.bicep
# ----------------------------------------------------------------------------------------------------


def app_settings(template: Template) -> dict[str, Node]:
    config = [
        r
        for r in template.resources_of_type("Microsoft.Web/sites/config")
        if literal(prop(r.value, "name")) == "appsettings"
    ]
    assert len(config) == 1, "expected one Microsoft.Web/sites/config named appsettings"
    return dict(properties(prop(config[0].value, "properties")))


def symbol_of(template: Template, resource_type: str) -> str:
    return template.one(resource_type).name


def symbol_of_id(node: Node | None) -> str | None:
    """``identity`` of the expression ``identity.id``; None for anything else."""
    match = re.fullmatch(r"(\w+)\.id", re.sub(r"\s+", "", text(node))) if node is not None else None
    return match.group(1) if match else None


def runtime_identity(template: Template) -> str:
    """The identity the app runs as: the one its Key Vault references are resolved with."""
    site = template.one("Microsoft.Web/sites")
    return symbol_of_id(prop(site.value, "properties.keyVaultReferenceIdentity")) or "?"


def package_identity(template: Template) -> str:
    """The identity the platform reads and writes the deployment package with."""
    site = template.one("Microsoft.Web/sites")
    path = "properties.functionAppConfig.deployment.storage.authentication.userAssignedIdentityResourceId"
    return symbol_of_id(prop(site.value, path)) or "?"


def storage_accounts(template: Template) -> dict[str, str]:
    """``{"host": symbol, "package": symbol}``: the package account is the one whose blob endpoint the
    deployment storage names; the host account (AzureWebJobsStorage, state tables) is the other one."""
    accounts = [a.name for a in template.resources_of_type("Microsoft.Storage/storageAccounts")]
    site = template.one("Microsoft.Web/sites")
    value = text(prop(site.value, "properties.functionAppConfig.deployment.storage.value"))
    package = [a for a in accounts if f"{a}.properties.primaryEndpoints.blob" in value]
    others = [a for a in accounts if a not in package]
    return {
        "package": package[0] if len(package) == 1 else "?",
        "host": others[0] if len(others) == 1 else "?",
    }


def account_of(template: Template, service: Declaration) -> str | None:
    """The storage account a blobServices/tableServices/containers resource belongs to (via parent)."""
    node: Declaration | None = service
    while node is not None and node.resource_type != "Microsoft.Storage/storageAccounts":
        parent = prop(node.value, "parent")
        node = template.resources.get(text(parent)) if parent is not None else None
    return node.name if node is not None else None


def param_default(template: Template, node: Node | None) -> str | None:
    """The default of the parameter ``node`` names (``string(p)`` included), or None."""
    if node is not None and node.type == "call_expression" and text(named(node)[0]) == "string":
        node = named(named(node)[1])[0]
    param = template.params.get(text(node)) if node is not None else None
    return literal(param.value) if param is not None else None


def decorator_number(param: Declaration | None, name: str) -> int | None:
    for decorator in param.decorators if param is not None else []:
        found = re.fullmatch(rf"@{name}\((\d+)\)", decorator)
        if found:
            return int(found.group(1))
    return None


def is_ref(node: Node | None, expected: str) -> bool:
    """The expression is exactly ``expected`` (for example ``identity.properties.clientId``)."""
    return node is not None and re.sub(r"\s+", "", text(node)) == expected


def expect(problems: list[str], condition: bool, message: str) -> None:
    if not condition:
        problems.append(message)


def iso_duration_seconds(value: str | None) -> float:
    match = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?", value or "")
    if not match or value in {"P", "PT"}:
        return float("nan")
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


# ----------------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------------


def check_app_settings_contract(template: Template) -> list[str]:
    problems: list[str] = []
    names = set(app_settings(template))
    expect(problems, not APP_SETTINGS - names, f"missing app settings: {sorted(APP_SETTINGS - names)}")
    expect(
        problems,
        not names - APP_SETTINGS,
        f"app settings outside the contract: {sorted(names - APP_SETTINGS)}",
    )
    site = template.one("Microsoft.Web/sites")
    expect(
        problems,
        prop(site.value, "properties.siteConfig.appSettings") is None,
        "app settings belong in the one appsettings resource, not siteConfig.appSettings",
    )
    return problems


def check_no_flex_deprecated_settings(template: Template) -> list[str]:
    """Anywhere in the file: as an object key, or as a 'name' value of a name/value pair."""
    found: set[str] = set()
    for node in walk(template.root):
        if node.type == "object_property" and key_of(node) in FORBIDDEN_SETTINGS:
            found.add(key_of(node))
        value = literal(node) if node.type == "string" else None
        if value in FORBIDDEN_SETTINGS:
            found.add(value)
    return [f"Flex Consumption forbids {name}" for name in sorted(found)]


def check_identity_based_connections(template: Template) -> list[str]:
    problems: list[str] = []
    settings = app_settings(template)
    identity = runtime_identity(template)
    storage = storage_accounts(template)["host"]
    for connection in ("AzureWebJobsStorage", "ServiceBusConnection"):
        credential = literal(settings.get(f"{connection}__credential"))
        expect(problems, credential == "managedidentity", f"{connection}__credential is {credential!r}")
        expect(
            problems,
            is_ref(settings.get(f"{connection}__clientId"), f"{identity}.properties.clientId"),
            f"{connection}__clientId is not the user-assigned identity's client id",
        )
    expect(
        problems,
        is_ref(settings.get("AZURE_CLIENT_ID"), f"{identity}.properties.clientId"),
        "AZURE_CLIENT_ID",
    )
    expect(
        problems,
        is_ref(settings.get("AzureWebJobsStorage__accountName"), f"{storage}.name"),
        "AzureWebJobsStorage__accountName is not the storage account's name",
    )
    namespace = template.follow(settings.get("ServiceBusConnection__fullyQualifiedNamespace"))
    bus = symbol_of(template, "Microsoft.ServiceBus/namespaces")
    expect(
        problems,
        namespace is not None and f"{bus}.properties.serviceBusEndpoint" in text(namespace),
        "ServiceBusConnection__fullyQualifiedNamespace is not derived from the namespace endpoint",
    )
    return problems


def check_app_setting_values(template: Template) -> list[str]:
    problems: list[str] = []
    settings = app_settings(template)
    rendered = {name: template.render(node) for name, node in settings.items()}
    site = symbol_of(template, "Microsoft.Web/sites")
    storage = storage_accounts(template)["host"]
    insights = symbol_of(template, "Microsoft.Insights/components")
    identity = runtime_identity(template)
    queue = template.one("Microsoft.ServiceBus/namespaces/queues")
    expect(problems, rendered["PROVISIONING_QUEUE"] == "provisioning-work", "PROVISIONING_QUEUE")
    expect(
        problems,
        template.render(prop(queue.value, "name")) == rendered["PROVISIONING_QUEUE"],
        "PROVISIONING_QUEUE is not the queue that is deployed",
    )
    expect(
        problems,
        is_ref(settings["PROVISIONING_TABLE_ENDPOINT"], f"{storage}.properties.primaryEndpoints.table"),
        "PROVISIONING_TABLE_ENDPOINT is not the storage account's table endpoint",
    )
    expect(problems, rendered["PROVISIONING_CONFIG"] == "mappings.yaml", "PROVISIONING_CONFIG")
    expect(problems, rendered["GRAPH_API_URL"] == "https://graph.microsoft.com/v1.0", "GRAPH_API_URL")
    expect(problems, "tenantId" in text(settings["AZURE_TENANT_ID"]), "AZURE_TENANT_ID")
    for name, path in (("GRAPH_NOTIFICATION_URL", "notifications"), ("GRAPH_LIFECYCLE_URL", "lifecycle")):
        wanted = f"https://{{{site}.properties.defaultHostName}}/api/graph/{path}"
        expect(problems, rendered[name] == wanted, f"{name} is {rendered[name]!r}, want {wanted!r}")
    for name, param in (("DRUVA_API_URL", "druvaApiUrl"), ("DRUVA_CLIENT_ID", "druvaClientId")):
        expect(problems, is_ref(settings[name], param), f"{name} is not the {param} parameter")
    druva_url = template.params.get("druvaApiUrl")
    expect(
        problems,
        druva_url is not None and literal(druva_url.value) == "https://apis.druva.com",
        "druvaApiUrl must default to https://apis.druva.com",
    )
    client_id = template.params.get("druvaClientId")
    expect(problems, client_id is not None and client_id.value is None, "druvaClientId must be required")
    expect(
        problems,
        is_ref(settings["APPLICATIONINSIGHTS_CONNECTION_STRING"], f"{insights}.properties.ConnectionString"),
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
    )
    expect(
        problems,
        rendered["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
        == f"ClientId={{{identity}.properties.clientId}};Authorization=AAD",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING must be Entra auth with the user-assigned identity",
    )
    return problems


def check_secrets_are_key_vault_references(template: Template) -> list[str]:
    problems: list[str] = []
    settings = app_settings(template)
    vault = symbol_of(template, "Microsoft.KeyVault/vaults")
    identity = runtime_identity(template)
    for name, secret in (
        ("DRUVA_CLIENT_SECRET", "druva-client-secret"),
        ("GRAPH_CLIENT_STATE", "graph-client-state"),
    ):
        value = template.render(settings.get(name))
        wanted = f"@Microsoft.KeyVault(SecretUri={{{vault}.properties.vaultUri}}secrets/{secret}/)"
        expect(problems, value == wanted, f"{name} is {value!r}, want {wanted!r}")
    site = template.one("Microsoft.Web/sites")
    expect(
        problems,
        is_ref(prop(site.value, "properties.keyVaultReferenceIdentity"), f"{identity}.id"),
        "keyVaultReferenceIdentity must be the user-assigned identity",
    )
    return problems


# Parameters whose names look like secrets but are not: an object id, and a Key Vault secret *version id*
# (check_tunables_are_parameters shows it is only ever used inside a Key Vault reference).
NOT_SECRETS = {"secretsOfficerPrincipalId", "graphClientStatePreviousVersion"}


def check_no_literal_secrets(template: Template) -> list[str]:
    problems: list[str] = []
    secret_name = re.compile(r"secret|password|clientstate|connectionstring|accountkey|sas|token", re.I)
    for param in template.params.values():
        secure = "@secure()" in param.decorators
        if secure:
            expect(problems, param.value is None, f"@secure() param {param.name} has a default value")
        elif secret_name.search(param.name) and param.name not in NOT_SECRETS:
            problems.append(f"param {param.name} looks like a secret but is not @secure()")
    # Secret values never pass through the template: the two secrets are created after deployment.
    for resource in template.resources_of_type("Microsoft.KeyVault/vaults/secrets"):
        problems.append(f"{resource.name}: secret values must not be deployed from the template")
    leaks = re.compile(r"AccountKey=|SharedAccessKey|SharedAccessSignature|sig=|password", re.I)
    for node in walk(template.root):
        if node.type == "call_expression" and re.match(r"list\w*", text(named(node)[0]).split(".")[-1]):
            problems.append(f"{text(node)[:40]}: listKeys-style calls hand out keys")
        if node.type == "string_content" and leaks.search(text(node)):
            problems.append(f"credential-like literal: {text(node)[:40]!r}")
    for output in template.outputs.values():
        body = text(output.node)
        if re.search(r"ConnectionString|list\w*\(|secret|key\b", body, re.I) or any(
            p.name in body for p in template.params.values() if "@secure()" in p.decorators
        ):
            problems.append(f"output {output.name} may expose a secret")
    return problems


def check_function_app_hardening(template: Template) -> list[str]:
    problems: list[str] = []
    site = template.one("Microsoft.Web/sites")
    body = site.value
    expect(problems, literal(prop(body, "kind")) == "functionapp,linux", "kind must be functionapp,linux")
    expect(problems, literal(prop(body, "properties.httpsOnly")) == "true", "httpsOnly must be true")
    expect(problems, literal(prop(body, "properties.siteConfig.minTlsVersion")) == "1.2", "minTlsVersion 1.2")
    expect(
        problems,
        literal(prop(body, "properties.siteConfig.scmMinTlsVersion")) == "1.2",
        "scmMinTlsVersion 1.2",
    )
    # Flex Consumption does not support siteConfig.ftpsState (ARM error 51021 in newer regions); FTP is
    # off through the basicPublishingCredentialsPolicies instead.
    expect(
        problems, prop(body, "properties.siteConfig.ftpsState") is None, "no ftpsState on Flex Consumption"
    )
    expect(
        problems,
        "'azd-service-name': 'provisioning'" in text(prop(body, "tags")),
        "the app must carry the azd-service-name tag of azure.yaml's service",
    )
    runtime, package = runtime_identity(template), package_identity(template)
    expect(
        problems, literal(prop(body, "identity.type")) == "UserAssigned", "identity.type must be UserAssigned"
    )
    expect(
        problems,
        sorted(properties(prop(body, "identity.userAssignedIdentities")))
        == sorted({f"${{{runtime}.id}}", f"${{{package}.id}}"}),
        "the site carries exactly the runtime and the package identities",
    )
    policies = {
        literal(prop(r.value, "name")): literal(prop(r.value, "properties.allow"))
        for r in template.resources_of_type("Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    }
    expect(
        problems, policies == {"ftp": "false", "scm": "false"}, f"basic publishing credentials: {policies}"
    )
    return problems


def check_flex_consumption(template: Template) -> list[str]:
    problems: list[str] = []
    plan = template.one("Microsoft.Web/serverfarms").value
    expect(problems, literal(prop(plan, "sku.name")) == "FC1", "plan sku.name FC1")
    expect(problems, literal(prop(plan, "sku.tier")) == "FlexConsumption", "plan sku.tier FlexConsumption")
    expect(problems, literal(prop(plan, "properties.reserved")) == "true", "plan must be Linux (reserved)")
    config = prop(template.one("Microsoft.Web/sites").value, "properties.functionAppConfig")
    expect(problems, literal(prop(config, "runtime.name")) == "python", "runtime python")
    expect(problems, literal(prop(config, "runtime.version")) == "3.11", "runtime 3.11")
    storage = prop(config, "deployment.storage")
    identities = {
        i.name for i in template.resources_of_type("Microsoft.ManagedIdentity/userAssignedIdentities")
    }
    runtime, package = runtime_identity(template), package_identity(template)
    container = template.one("Microsoft.Storage/storageAccounts/blobServices/containers")
    expect(
        problems, literal(prop(storage, "type")) == "blobContainer", "deployment storage is a blob container"
    )
    expect(
        problems,
        literal(prop(storage, "authentication.type")) == "UserAssignedIdentity",
        "the deployment package must be read with a user-assigned identity",
    )
    # The runtime identity must not be able to replace its own package: another identity handles it.
    expect(
        problems,
        identities == {runtime, package} and runtime != package,
        f"the package identity ({package}) must be a user-assigned identity apart from the runtime one",
    )
    expect(
        problems,
        f"{container.name}.name" in text(prop(storage, "value"))
        and account_of(template, container) == storage_accounts(template)["package"],
        "deployment storage is the package container, in the package storage account",
    )
    for setting, wanted in (("maximumInstanceCount", 40), ("instanceMemoryMB", 2048)):
        node = prop(config, f"scaleAndConcurrency.{setting}")
        param = template.params.get(text(node)) if node is not None else None
        default = literal(param.value) if param else literal(node)
        expect(problems, default == str(wanted), f"{setting} defaults to {default}, want {wanted}")
    return problems


def check_storage_hardening(template: Template) -> list[str]:
    problems: list[str] = []
    wanted = {
        "allowSharedKeyAccess": "false",
        "allowBlobPublicAccess": "false",
        "minimumTlsVersion": "TLS1_2",
        "supportsHttpsTrafficOnly": "true",
    }
    accounts = template.resources_of_type("Microsoft.Storage/storageAccounts")
    expect(problems, len(accounts) == 2, f"two storage accounts (host, package), found {len(accounts)}")
    for account in accounts:
        for name, value in wanted.items():
            actual = literal(prop(account.value, f"properties.{name}"))
            expect(problems, actual == value, f"{account.name}: storage {name} is {actual}, want {value}")
    for container in template.resources_of_type("Microsoft.Storage/storageAccounts/blobServices/containers"):
        access = literal(prop(container.value, "properties.publicAccess"))
        expect(problems, access == "None", f"container {container.name} publicAccess is {access}")
    return problems


def check_service_bus(template: Template) -> list[str]:
    problems: list[str] = []
    namespace = template.one("Microsoft.ServiceBus/namespaces").value
    expect(problems, literal(prop(namespace, "sku.name")) == "Standard", "Service Bus sku Standard")
    expect(
        problems,
        literal(prop(namespace, "properties.disableLocalAuth")) == "true",
        "Service Bus local auth on",
    )
    expect(problems, literal(prop(namespace, "properties.minimumTlsVersion")) == "1.2", "Service Bus TLS 1.2")
    queue = prop(template.one("Microsoft.ServiceBus/namespaces/queues").value, "properties")
    expect(problems, literal(prop(queue, "requiresDuplicateDetection")) == "true", "duplicate detection off")
    window = iso_duration_seconds(literal(prop(queue, "duplicateDetectionHistoryTimeWindow")))
    expect(problems, 60 <= window <= 3600, f"duplicate detection window {window}s, want 1-60 min")
    expect(
        problems,
        literal(prop(queue, "deadLetteringOnMessageExpiration")) == "true",
        "dead-lettering on expiry",
    )
    deliveries = literal(prop(queue, "maxDeliveryCount"))
    expect(problems, deliveries is not None and 5 <= int(deliveries) <= 20, f"maxDeliveryCount {deliveries}")
    lock = iso_duration_seconds(literal(prop(queue, "lockDuration")))
    # At least a cursor lease (a dead worker's lease lapses before its message comes back), at most
    # Service Bus's maximum; tests/unit/test_limits.py checks how it fits with host.json and the lease.
    expect(problems, lock is not None and 60 <= lock <= 300, f"lockDuration {lock}s, want 1 to 5 min")
    expect(problems, literal(prop(queue, "requiresSession")) in {None, "false"}, "sessions need a session id")
    return problems


def check_key_vault(template: Template) -> list[str]:
    problems: list[str] = []
    vault = prop(template.one("Microsoft.KeyVault/vaults").value, "properties")
    for name in ("enableRbacAuthorization", "enableSoftDelete", "enablePurgeProtection"):
        expect(problems, literal(prop(vault, name)) == "true", f"Key Vault {name} must be true")
    expect(problems, prop(vault, "accessPolicies") is None, "Key Vault uses RBAC, not access policies")
    retention = literal(prop(vault, "softDeleteRetentionInDays"))
    expect(problems, retention is not None and int(retention) >= 7, f"soft delete retention {retention}")
    return problems


def check_monitoring(template: Template) -> list[str]:
    problems: list[str] = []
    insights = template.one("Microsoft.Insights/components").value
    workspace = symbol_of(template, "Microsoft.OperationalInsights/workspaces")
    expect(
        problems,
        literal(prop(insights, "properties.DisableLocalAuth")) == "true",
        "App Insights local auth on",
    )
    expect(
        problems,
        is_ref(prop(insights, "properties.WorkspaceResourceId"), f"{workspace}.id"),
        "Application Insights must be workspace-based",
    )
    logs = template.one("Microsoft.OperationalInsights/workspaces").value
    expect(
        problems,
        literal(prop(logs, "properties.features.disableLocalAuth")) == "true",
        "workspace local auth",
    )
    return problems


def role_id(template: Template, assignment: Declaration) -> str | None:
    definition = prop(assignment.value, "properties.roleDefinitionId")
    if definition is None or definition.type != "call_expression":
        return None
    if text(named(definition)[0]) != "subscriptionResourceId":
        return None
    args = named(named(definition)[1])
    if len(args) != 2 or literal(args[0]) != "Microsoft.Authorization/roleDefinitions":
        return None
    return template.render(args[1])


def scope_kind(template: Template, target: Declaration) -> str:
    """What a role is scoped to: "host"/"package" for the storage accounts, else the resource type."""
    if target.resource_type == "Microsoft.Storage/storageAccounts":
        accounts = storage_accounts(template)
        return next((kind for kind, name in accounts.items() if name == target.name), "?")
    return target.resource_type


def grantee(template: Template, assignment: Declaration) -> tuple[str, dict[str, str]] | None:
    """Whose assignment this is (runtime, package, operators), and the roles that one may hold."""
    principal = prop(assignment.value, "properties.principalId")
    if is_ref(principal, f"{runtime_identity(template)}.properties.principalId"):
        return "runtime", RUNTIME_ROLES
    if is_ref(principal, f"{package_identity(template)}.properties.principalId"):
        return "package", PACKAGE_ROLES
    if is_ref(principal, "operatorsGroupId"):
        return "operators", OPERATOR_ROLES
    return None


def check_role_assignments(template: Template) -> list[str]:
    problems: list[str] = []
    expect(problems, template.target_scope == "resourceGroup", f"targetScope is {template.target_scope}")
    granted: dict[str, dict[str, str]] = {"runtime": {}, "package": {}, "operators": {}}
    for assignment in template.resources_of_type("Microsoft.Authorization/roleAssignments"):
        role = role_id(template, assignment) or "?"
        scope = prop(assignment.value, "scope")
        target = (
            template.resources.get(text(scope)) if scope is not None and scope.type == "identifier" else None
        )
        if target is None:
            where = text(scope) if scope is not None else "the deployment scope"
            problems.append(f"{assignment.name}: scope must be a resource declared here, not {where}")
            continue
        kind = scope_kind(template, target)
        if role == QUEUE_DATA_CONTRIBUTOR:
            problems.append(f"{assignment.name}: Storage Queue Data Contributor, which nothing uses")
        whose = grantee(template, assignment)
        if whose is None:
            admin = role == KEY_VAULT_SECRETS_OFFICER and kind == "Microsoft.KeyVault/vaults"
            expect(problems, admin, f"{assignment.name}: unexpected principal or role {role}")
            expect(problems, assignment.condition is not None, f"{assignment.name}: the admin role is opt-in")
            continue
        who, wanted = whose
        if role not in wanted:
            problems.append(f"{assignment.name}: role {role} is not one the {who} identity needs")
            continue
        expect(problems, kind == wanted[role], f"{assignment.name}: scoped to {kind}, want {wanted[role]}")
        problems += assignment_conditions(assignment, who)
        granted[who][role] = kind
    for who, wanted in (
        ("runtime", RUNTIME_ROLES),
        ("package", PACKAGE_ROLES),
        ("operators", OPERATOR_ROLES),
    ):
        missing = set(wanted) - set(granted[who])
        expect(problems, not missing, f"roles the {who} identity needs but does not get: {sorted(missing)}")
    expect(
        problems,
        "package" not in granted["runtime"].values(),
        "the runtime identity must hold no role on the package storage account",
    )
    operators = template.params.get("operatorsGroupId")
    expect(
        problems,
        operators is not None and literal(operators.value) == "",
        "operatorsGroupId must be an optional parameter (default '')",
    )
    for node in walk(template.root):
        if node.type == "object_property" and key_of(node) == "scope":
            value = named(node)[1]
            if value.type == "call_expression" and text(named(value)[0]) in {
                "subscription",
                "resourceGroup",
                "tenant",
                "managementGroup",
            }:
                problems.append(f"scope {text(value)}: assignments are scoped to single resources")
    return problems


def assignment_conditions(assignment: Declaration, who: str) -> list[str]:
    """The identities' roles are unconditional; the operators' exist only with operatorsGroupId."""
    problems: list[str] = []
    principal_type = literal(prop(assignment.value, "properties.principalType"))
    if who == "operators":
        condition = assignment.condition
        expect(
            problems,
            condition is not None and re.sub(r"\s+", "", text(condition)) == "!empty(operatorsGroupId)",
            f"{assignment.name}: operators' roles only when operatorsGroupId is given",
        )
        expect(problems, principal_type == "Group", f"{assignment.name}: principalType Group")
    else:
        expect(
            problems, assignment.condition is None, f"{assignment.name}: the {who} roles are unconditional"
        )
        expect(
            problems,
            principal_type == "ServicePrincipal",
            f"{assignment.name}: principalType ServicePrincipal",
        )
    return problems


def check_bootstrap_role(template: Template) -> list[str]:
    """The admin's Key Vault Secrets Officer role exists only for the bootstrap: the template says which
    assignment it is (output bootstrapRoleAssignmentId), and the azd post-provision hook deletes that one
    once the secrets are in the vault (test_hooks.py)."""
    problems: list[str] = []
    officers = [
        a
        for a in template.resources_of_type("Microsoft.Authorization/roleAssignments")
        if role_id(template, a) == KEY_VAULT_SECRETS_OFFICER
    ]
    expect(problems, len(officers) == 1, f"one Key Vault Secrets Officer assignment, found {len(officers)}")
    if not officers:
        return problems
    officer = officers[0]
    condition = template.follow(officer.condition)
    expect(
        problems,
        condition is not None and "!empty(secretsOfficerPrincipalId)" in re.sub(r"\s+", "", text(condition)),
        "the bootstrap role exists only when secretsOfficerPrincipalId is given",
    )
    output = template.outputs.get("bootstrapRoleAssignmentId")
    expect(
        problems,
        output is not None and f"{officer.name}.id" in text(output.value),
        f"output bootstrapRoleAssignmentId must name the assignment ({officer.name}.id) the hook removes",
    )
    return problems


def check_graph_permissions(template: Template) -> list[str]:
    problems: list[str] = []
    module = [
        m for m in template.modules.values() if literal(named(m.node)[1]) == "modules/graph-app-roles.bicep"
    ]
    if len(module) != 1:
        return ["main.bicep must use modules/graph-app-roles.bicep once"]
    identity = runtime_identity(template)
    expect(
        problems,
        is_ref(prop(module[0].value, "params.principalId"), f"{identity}.properties.principalId"),
        "Graph roles must go to the user-assigned identity",
    )
    condition = module[0].condition
    switch = template.params.get(text(condition)) if condition is not None else None
    expect(
        problems,
        switch is not None and switch.name == "grantGraphPermissions",
        "Graph grant must be behind grantGraphPermissions",
    )
    # Off by default: the grant is a separate step that waits for the new identity to replicate.
    expect(
        problems,
        switch is not None and literal(switch.value) == "false",
        "grantGraphPermissions must default to false",
    )
    return problems


def check_tunables_are_parameters(template: Template) -> list[str]:
    """Every setting an admin may tune is a parameter, so a provision (which replaces every app setting)
    never drops it; and every setting the app reads in Azure is in the contract."""
    problems: list[str] = []
    settings = app_settings(template)
    for setting, (param, default) in TUNABLES.items():
        node = settings.get(setting)
        value = named(named(node)[1])[0] if node is not None and node.type == "call_expression" else node
        expect(
            problems,
            value is not None and text(value) == param and param in template.params,
            f"{setting} must be the parameter {param}",
        )
        declared = template.params.get(param)
        actual = literal(declared.value) if declared is not None else None
        expect(problems, actual == default, f"{param} defaults to {actual}, want {default}")
    mode = template.params.get("initialMode")
    allowed = "".join(d for d in mode.decorators if d.startswith("@allowed")) if mode else ""
    expect(
        problems,
        sorted(re.findall(r"'(\w+)'", allowed)) == ["apply", "plan"],
        "initialMode allows exactly plan and apply",
    )
    # The previous client state: a Key Vault reference to a version of the same secret, or blank.
    previous = settings.get("GRAPH_CLIENT_STATE_PREVIOUS")
    parts = named(previous) if previous is not None and previous.type == "ternary_expression" else []
    vault = symbol_of(template, "Microsoft.KeyVault/vaults")
    wanted = (
        f"@Microsoft.KeyVault(SecretUri={{{vault}.properties.vaultUri}}secrets/graph-client-state/"
        "{graphClientStatePreviousVersion})"
    )
    expect(
        problems,
        len(parts) == 3
        and re.sub(r"\s+", "", text(parts[0])) == "empty(graphClientStatePreviousVersion)"
        and literal(parts[1]) == ""
        and template.render(parts[2]) == wanted,
        f"GRAPH_CLIENT_STATE_PREVIOUS must be blank or {wanted}",
    )
    version = template.params.get("graphClientStatePreviousVersion")
    expect(
        problems, version is not None and literal(version.value) == "", "graphClientStatePreviousVersion = ''"
    )
    uses = [
        n
        for n in walk(template.root)
        if n.type == "identifier" and text(n) == "graphClientStatePreviousVersion"
    ]
    expect(
        problems,
        len(uses) == 3,
        "graphClientStatePreviousVersion is used only by GRAPH_CLIENT_STATE_PREVIOUS",
    )
    # What the app reads, minus what only local runs use, is what the template sets.
    from provisioning.settings import Settings

    read = {str(field.validation_alias) for field in Settings.model_fields.values() if field.validation_alias}
    unset = read - LOCAL_ONLY_SETTINGS - set(settings)
    expect(
        problems,
        not unset,
        f"the app reads {sorted(unset)}, which main.bicep does not set: add a parameter and the setting "
        "(or list it in LOCAL_ONLY_SETTINGS if Azure never needs it)",
    )
    return problems


def check_scm_restricted(template: Template) -> list[str]:
    """Kudu/SCM (code deployment) answers only the allow-list, which is empty by default; the app's own
    endpoint stays open for Microsoft Graph."""
    problems: list[str] = []
    config = prop(template.one("Microsoft.Web/sites").value, "properties.siteConfig")
    expect(
        problems,
        literal(prop(config, "scmIpSecurityRestrictionsUseMain")) == "false",
        "scmIpSecurityRestrictionsUseMain must be false (SCM has its own, stricter rules)",
    )
    expect(
        problems,
        literal(prop(config, "scmIpSecurityRestrictionsDefaultAction")) == "Deny",
        "SCM must deny whatever its allow-list does not name",
    )
    expect(
        problems,
        literal(prop(config, "ipSecurityRestrictionsDefaultAction")) == "Allow"
        and prop(config, "ipSecurityRestrictions") is None,
        "the app's endpoint stays open: Microsoft Graph delivers from the internet",
    )
    rules = prop(config, "scmIpSecurityRestrictions")
    children = named(rules) if rules is not None else []
    source = template.follow(children[1]) if rules is not None and rules.type == "for_statement" else None
    body = children[2] if len(children) == 3 else None
    expect(
        problems,
        source is not None
        and "scmAllowedIpRanges" in text(source)
        and literal(prop(body, "action")) == "Allow",
        "scmIpSecurityRestrictions: one Allow rule per entry of scmAllowedIpRanges, nothing else",
    )
    allowed = template.params.get("scmAllowedIpRanges")
    expect(
        problems,
        allowed is not None and literal(allowed.value) == "",
        "scmAllowedIpRanges must default to '' (no address)",
    )
    return problems


def check_diagnostic_settings(template: Template) -> list[str]:
    """Resource logs of storage (blobs of both accounts, tables), Service Bus, Key Vault and the app go to
    the workspace, which keeps them at least 90 days."""
    problems: list[str] = []
    workspace = template.one("Microsoft.OperationalInsights/workspaces")
    accounts = {name: kind for kind, name in storage_accounts(template).items()}
    covered: set[tuple[str | None, str]] = set()
    for setting in template.resources_of_type("Microsoft.Insights/diagnosticSettings"):
        scope = prop(setting.value, "scope")
        target = template.resources.get(text(scope)) if scope is not None else None
        if target is None:
            problems.append(f"{setting.name}: scoped to something not declared here")
            continue
        account = (
            accounts.get(account_of(template, target) or "") if "Storage" in target.resource_type else None
        )
        expect(problems, setting.condition is None, f"{setting.name}: always deployed")
        expect(
            problems,
            is_ref(prop(setting.value, "properties.workspaceId"), f"{workspace.name}.id"),
            f"{setting.name}: into the Log Analytics workspace",
        )
        logs = prop(setting.value, "properties.logs")
        entries = named(logs) if logs is not None else []
        expect(
            problems,
            bool(entries)
            and all(literal(prop(e, "enabled")) == "true" for e in entries)
            and all(
                literal(prop(e, "categoryGroup")) in {"audit", "allLogs"} or prop(e, "category")
                for e in entries
            ),
            f"{setting.name}: logs enabled (a category group or categories)",
        )
        covered.add((account, target.resource_type))
    for what, wanted in AUDITED.items():
        expect(problems, wanted in covered, f"no diagnostic setting for {what}")
    retention = prop(workspace.value, "properties.retentionInDays")
    param = template.params.get(text(retention)) if retention is not None else None
    default = literal(param.value) if param is not None else literal(retention)
    expect(
        problems,
        default is not None and int(default) >= MIN_LOG_RETENTION_DAYS,
        f"workspace retention defaults to {default} days, want at least {MIN_LOG_RETENTION_DAYS}",
    )
    floor = decorator_number(param, "minValue")
    expect(
        problems,
        param is None or (floor is not None and floor >= MIN_LOG_RETENTION_DAYS),
        f"logRetentionInDays must not go below {MIN_LOG_RETENTION_DAYS} (@minValue)",
    )
    return problems


def check_scale_and_concurrency(template: Template) -> list[str]:
    """One always-ready HTTP instance by default (Graph's 10 s validation and 3 s notifications meet no
    cold start), and a per-instance HTTP concurrency that, with the instance cap, bounds a flood."""
    problems: list[str] = []
    scale = prop(
        template.one("Microsoft.Web/sites").value, "properties.functionAppConfig.scaleAndConcurrency"
    )
    always = template.follow(prop(scale, "alwaysReady"))
    groups = [n for n in walk(always) if n.type == "object"] if always is not None else []
    http = [g for g in groups if literal(prop(g, "name")) == "http"]
    count = prop(http[0], "instanceCount") if len(http) == 1 else None
    expect(
        problems,
        len(http) == 1
        and text(count) == "alwaysReadyHttpInstances"
        and param_default(template, count) == "1",
        "alwaysReady: one 'http' entry whose instanceCount is alwaysReadyHttpInstances (default 1)",
    )
    concurrency = prop(scale, "triggers.http.perInstanceConcurrency")
    default = param_default(template, concurrency)
    ceiling = decorator_number(template.params.get(text(concurrency)), "maxValue") if concurrency else None
    expect(
        problems,
        default is not None and 1 <= int(default) <= 100 and ceiling is not None,
        f"triggers.http.perInstanceConcurrency must be a bounded parameter (default {default})",
    )
    body_limit = param_default(template, app_settings(template).get("FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"))
    expect(
        problems,
        body_limit is not None and int(body_limit) <= 8 * 1024 * 1024,
        f"the request-size cap defaults to {body_limit} bytes, want at most 8 MiB",
    )
    return problems


def check_budget(template: Template) -> list[str]:
    """A monthly budget on the resource group mails alertEmail; its start date stays what it was."""
    problems: list[str] = []
    budgets = template.resources_of_type("Microsoft.Consumption/budgets")
    expect(problems, len(budgets) == 1, f"one Microsoft.Consumption/budgets, found {len(budgets)}")
    if len(budgets) != 1:
        return problems
    budget = budgets[0]
    body = prop(budget.value, "properties")
    expect(problems, prop(budget.value, "scope") is None, "the budget covers this resource group (no scope)")
    expect(problems, literal(prop(body, "category")) == "Cost", "budget category Cost")
    expect(problems, literal(prop(body, "timeGrain")) == "Monthly", "budget timeGrain Monthly")
    amount = prop(body, "amount")
    default = param_default(template, amount)
    expect(problems, default is not None and int(default) > 0, f"budget amount defaults to {default}")
    condition = budget.condition
    expect(
        problems,
        condition is None or re.sub(r"\s+", "", text(condition)) == f"{text(amount)}>0",
        "the budget is left out only when its amount is 0",
    )
    notifications = properties(prop(body, "notifications"))
    expect(problems, bool(notifications), "the budget notifies someone")
    for name, notification in notifications.items():
        emails = prop(notification, "contactEmails")
        expect(
            problems,
            emails is not None
            and [text(n) for n in named(emails)] == ["alertEmail"]
            and literal(prop(notification, "enabled")) == "true",
            f"budget notification {name} mails alertEmail",
        )
    start = template.follow(prop(body, "timePeriod.startDate"))
    expect(
        problems,
        start is not None and "budgetStartDate" in text(start),
        "the budget's start date comes from budgetStartDate (Azure refuses to change it later)",
    )
    expect(problems, "budgetStartDate" in template.outputs, "output budgetStartDate (azd records it)")
    return problems


# ----------------------------------------------------------------------------------------------------
# The real templates pass every check
# ----------------------------------------------------------------------------------------------------

CHECKS: list[Check] = [
    check_app_settings_contract,
    check_no_flex_deprecated_settings,
    check_identity_based_connections,
    check_app_setting_values,
    check_secrets_are_key_vault_references,
    check_no_literal_secrets,
    check_function_app_hardening,
    check_flex_consumption,
    check_storage_hardening,
    check_service_bus,
    check_key_vault,
    check_monitoring,
    check_role_assignments,
    check_bootstrap_role,
    check_graph_permissions,
    check_tunables_are_parameters,
    check_scm_restricted,
    check_diagnostic_settings,
    check_scale_and_concurrency,
    check_budget,
]


@pytest.fixture(scope="module")
def main() -> Template:
    return Template(MAIN)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_main_bicep(check: Check, main: Template) -> None:
    assert check(main) == []


def check_graph_module(module: Template) -> list[str]:
    """modules/graph-app-roles.bicep grants exactly the three read permissions on Microsoft Graph."""
    problems: list[str] = []
    expect(problems, module.extensions == ["microsoftGraphV1"], f"extensions {module.extensions}")
    graph = module.one("Microsoft.Graph/servicePrincipals")
    expect(
        problems, graph.existing and graph.type_string.endswith("@v1.0"), "Graph SP is looked up (existing)"
    )
    expect(
        problems,
        module.render(prop(graph.value, "appId")) == MICROSOFT_GRAPH_APP_ID,
        "the service principal must be Microsoft Graph's",
    )
    granted: list[str | None] = []
    for assignment in module.resources_of_type("Microsoft.Graph/appRoleAssignedTo"):
        name = assignment.name
        expect(problems, assignment.type_string.endswith("@v1.0"), f"{name}: v1.0 types")
        expect(
            problems, is_ref(prop(assignment.value, "resourceId"), f"{graph.name}.id"), f"{name}: resourceId"
        )
        expect(problems, is_ref(prop(assignment.value, "principalId"), "principalId"), f"{name}: principalId")
        # The role id is looked up by value on the tenant's Graph service principal, never pasted in.
        role_id = prop(assignment.value, "appRoleId")
        lookup = next((n for n in walk(role_id) if n.type == "call_expression"), None) if role_id else None
        searched = module.follow(named(named(lookup)[1])[0]) if lookup is not None else None
        expect(
            problems,
            lookup is not None
            and text(named(lookup)[0]) == "filter"
            and text(searched) == f"{graph.name}.appRoles",
            f"{name}: appRoleId must be looked up by value in {graph.name}.appRoles",
        )
        values = [literal(n) for n in walk(role_id) if n.type == "string"] if role_id else []
        granted.extend(values or [None])
    expect(
        problems,
        sorted(map(str, granted)) == sorted(GRAPH_APP_ROLES),
        f"Graph app roles granted: {granted}, want {sorted(GRAPH_APP_ROLES)}",
    )
    principal = module.params.get("principalId")
    expect(problems, principal is not None and principal.value is None, "principalId must be required")
    expect(
        problems,
        not module.resources_of_type("Microsoft.Authorization/roleAssignments"),
        "no Azure RBAC here",
    )
    return problems


def test_graph_module() -> None:
    assert check_graph_module(Template(GRAPH_MODULE)) == []


EXTRA_GRAPH_ROLE = """
resource mailRead 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  principalId: principalId
  resourceId: microsoftGraph.id
  appRoleId: filter(graphAppRoles, appRole => appRole.value == 'Mail.Read')[0].id
}
"""

GRAPH_REGRESSIONS: dict[str, Callable[[str], str]] = {
    "wider role": lambda s: s.replace("'Group.Read.All'", "'Directory.ReadWrite.All'"),
    "members only": lambda s: s.replace("'Group.Read.All'", "'GroupMember.Read.All'"),
    "pasted role id": lambda s: s.replace(
        "filter(graphAppRoles, appRole => appRole.value == 'User.Read.All')[0].id",
        "'df021288-bdef-4463-88db-98f22de89214'",
    ),
    "extra role": lambda s: s + EXTRA_GRAPH_ROLE,
    "another principal": lambda s: s.replace("  principalId: principalId\n", "  principalId: 'someone'\n", 1),
}


@pytest.mark.parametrize("regression", GRAPH_REGRESSIONS, ids=str)
def test_graph_check_catches_its_regressions(regression: str, tmp_path: Path) -> None:
    source = GRAPH_MODULE.read_text()
    broken = GRAPH_REGRESSIONS[regression](source)
    assert broken != source, f"{regression} no longer applies to the module; update it"
    copy = tmp_path / "graph-app-roles.bicep"
    copy.write_text(broken)
    assert not syntax_problems(copy.read_bytes())
    assert check_graph_module(Template(copy)), f"check_graph_module did not notice: {regression}"


def test_graph_module_has_no_secrets() -> None:
    assert check_no_literal_secrets(Template(GRAPH_MODULE)) == []


def test_parameters_file_is_placeholders_for_main() -> None:
    params = Template(PARAMS)
    declared = Template(MAIN).params
    assert params.using == "./main.bicep"
    assert set(params.params) <= set(declared), "the parameters file sets parameters main.bicep lacks"
    required = {name for name, p in declared.items() if p.value is None}
    assert required <= set(params.params), f"required parameters missing: {required - set(params.params)}"
    assert check_no_literal_secrets(params) == []
    for name, param in params.params.items():
        value = literal(param.value)
        assert value is not None, f"{name}: example values are literals"
        default = literal(declared[name].value)
        # Admin-specific values are <placeholders>; everything else repeats the template's default.
        assert re.fullmatch(r"<[a-z0-9-]+>", value) or value == default, f"{name} = {value!r}"
    assert literal(params.params["baseName"].value) == "<short-name>"
    assert literal(params.params["druvaClientId"].value) == "<druva-api-client-id>"


# ----------------------------------------------------------------------------------------------------
# Every check can fail: one regression per check, applied to a copy of main.bicep
# ----------------------------------------------------------------------------------------------------

REGRESSIONS: dict[str, tuple[Check, str, str]] = {
    "setting dropped": (check_app_settings_contract, "    GRAPH_LIFECYCLE_URL:", "    GRAPH_LIFECYCLE:"),
    "worker runtime set": (
        check_no_flex_deprecated_settings,
        "    PROVISIONING_CONFIG: 'mappings.yaml'\n",
        "    PROVISIONING_CONFIG: 'mappings.yaml'\n    FUNCTIONS_WORKER_RUNTIME: 'python'\n",
    ),
    "storage by key": (
        check_identity_based_connections,
        "AzureWebJobsStorage__credential: 'managedidentity'",
        "AzureWebJobsStorage__credential: 'connectionstring'",
    ),
    "wrong queue": (
        check_app_setting_values,
        "PROVISIONING_QUEUE: provisioningQueue.name",
        "PROVISIONING_QUEUE: 'work'",
    ),
    "secret inline": (
        check_secrets_are_key_vault_references,
        "DRUVA_CLIENT_SECRET: '@Microsoft.KeyVault(SecretUri=${keyVaultSecretUri}/${druvaSecretName}/)'",
        "DRUVA_CLIENT_SECRET: druvaClientId",
    ),
    "key in a string": (
        check_no_literal_secrets,
        "PROVISIONING_CONFIG: 'mappings.yaml'",
        "PROVISIONING_CONFIG: 'AccountKey=abc'",
    ),
    "http allowed": (check_function_app_hardening, "httpsOnly: true", "httpsOnly: false"),
    "system identity for the package": (
        check_flex_consumption,
        "type: 'UserAssignedIdentity'",
        "type: 'SystemAssignedIdentity'",
    ),
    "shared keys on": (check_storage_hardening, "allowSharedKeyAccess: false", "allowSharedKeyAccess: true"),
    "duplicate detection off": (
        check_service_bus,
        "requiresDuplicateDetection: true",
        "requiresDuplicateDetection: false",
    ),
    "access policies": (check_key_vault, "enableRbacAuthorization: true", "enableRbacAuthorization: false"),
    "insights keys": (check_monitoring, "DisableLocalAuth: true", "DisableLocalAuth: false"),
    "role on the resource group": (
        check_role_assignments,
        "  scope: storage\n",
        "  scope: resourceGroup()\n",
    ),
    "queue role back": (
        check_role_assignments,
        "storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'",
        "storageTableDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'",
    ),
    "runtime identity writes the package": (
        check_role_assignments,
        "principalId: packageIdentity.properties.principalId",
        "principalId: identity.properties.principalId",
    ),
    "operators' roles without the parameter": (
        check_role_assignments,
        "= if (!empty(operatorsGroupId)) {",
        "= {",
    ),
    "operators write the state": (
        check_role_assignments,
        "'Microsoft.Authorization/roleDefinitions', roles.storageTableDataReader)",
        "'Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)",
    ),
    "bootstrap role kept": (
        check_bootstrap_role,
        "output bootstrapRoleAssignmentId string = bootstrapRole ? bootstrapVaultRole.id : ''",
        "output bootstrapRoleAssignmentId string = ''",
    ),
    "package read with the runtime identity": (
        check_flex_consumption,
        "userAssignedIdentityResourceId: packageIdentity.id",
        "userAssignedIdentityResourceId: identity.id",
    ),
    "package in the host account": (
        check_flex_consumption,
        "value: '${packageStorage.properties.primaryEndpoints.blob}${deploymentContainer.name}'",
        "value: '${storage.properties.primaryEndpoints.blob}${deploymentContainer.name}'",
    ),
    "Graph grant forced": (check_graph_permissions, "= if (grantGraphPermissions) {", "= {"),
    "previous client state not a parameter": (
        check_tunables_are_parameters,
        "    GRAPH_CLIENT_STATE_PREVIOUS: empty(",
        "    GRAPH_CLIENT_STATE_PREVIOUS_OLD: empty(",
    ),
    "log level hard-coded": (
        check_tunables_are_parameters,
        "PROVISIONING_LOG_LEVEL: logLevel",
        "PROVISIONING_LOG_LEVEL: 'INFO'",
    ),
    "writes from the start": (
        check_tunables_are_parameters,
        "param initialMode string = 'plan'",
        "param initialMode string = 'apply'",
    ),
    "SCM open to all": (
        check_scm_restricted,
        "scmIpSecurityRestrictionsDefaultAction: 'Deny'",
        "scmIpSecurityRestrictionsDefaultAction: 'Allow'",
    ),
    "SCM follows the open site": (
        check_scm_restricted,
        "scmIpSecurityRestrictionsUseMain: false",
        "scmIpSecurityRestrictionsUseMain: true",
    ),
    "logs kept 30 days": (
        check_diagnostic_settings,
        "param logRetentionInDays int = 90",
        "param logRetentionInDays int = 30",
    ),
    "package writes not audited": (
        check_diagnostic_settings,
        "  scope: packageBlobService\n",
        "  scope: blobService\n",
    ),
    "no warm HTTP instance": (
        check_scale_and_concurrency,
        "param alwaysReadyHttpInstances int = 1",
        "param alwaysReadyHttpInstances int = 0",
    ),
    "concurrency not a bounded parameter": (
        check_scale_and_concurrency,
        "perInstanceConcurrency: httpPerInstanceConcurrency",
        "perInstanceConcurrency: 1000",
    ),
    "budget mails someone else": (
        check_budget,
        "        contactEmails: [\n          alertEmail\n",
        "        contactEmails: [\n          'finance@example.com'\n",
    ),
    "budget start moves every month": (check_budget, "startDate: budgetStart", "startDate: deploymentMonth"),
}


def test_every_check_has_a_regression() -> None:
    assert {check for check, _, _ in REGRESSIONS.values()} == set(CHECKS)


@pytest.mark.parametrize("regression", REGRESSIONS, ids=str)
def test_each_check_catches_its_regression(regression: str, tmp_path: Path) -> None:
    check, old, new = REGRESSIONS[regression]
    source = MAIN.read_text()
    assert old in source, f"{regression}: {old!r} is no longer in main.bicep; update the regression"
    copy = tmp_path / "main.bicep"
    copy.write_text(source.replace(old, new, 1))
    assert not syntax_problems(copy.read_bytes()), "the regression must stay valid Bicep"
    assert check(Template(copy)), f"{check.__name__} did not notice: {regression}"
