"""`azd up`: azure.yaml, the parameters azd passes, and the hooks, against what azd reads.

azd reads from azure.yaml: ``infra.provider``/``path``/``module`` (the Bicep entry point and, beside it,
``<module>.parameters.json`` with ``${VAR}`` taken from the azd environment), and per service ``project``,
``language``, ``host``; it deploys a service to the resource tagged ``azd-service-name: <service>``.
Hooks run the commands given under ``hooks`` after/before each phase. What the hooks do, with stub
``az``/``azd`` executables, is in test_hooks.py.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.infra.bicep import Template, literal

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
AZURE_YAML = ROOT / "azure.yaml"
SCRIPTS = INFRA / "scripts"
ENV_REFERENCE = re.compile(r"^\$\{([A-Z_][A-Z0-9_]*)(=[^}]*)?\}$")


@pytest.fixture(scope="module")
def project() -> dict[str, object]:
    loaded = yaml.safe_load(AZURE_YAML.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_the_project_provisions_main_bicep(project: dict[str, object]) -> None:
    infra = project["infra"]
    assert isinstance(infra, dict)
    assert infra == {"provider": "bicep", "path": "infra", "module": "main"}
    assert (ROOT / infra["path"] / f"{infra['module']}.bicep").is_file()
    assert isinstance(project["name"], str) and re.fullmatch(r"[a-z0-9-]+", project["name"])


def test_one_python_function_service_from_the_repository_root(project: dict[str, object]) -> None:
    services = project["services"]
    assert isinstance(services, dict) and list(services) == ["provisioning"]
    service = services["provisioning"]
    assert service["project"] == "." and service["language"] == "python" and service["host"] == "function"
    assert (ROOT / service["project"] / "function_app.py").is_file()
    assert (ROOT / service["project"] / "requirements.txt").is_file()
    tag = f"'azd-service-name': '{next(iter(services))}'"
    assert tag in (INFRA / "main.bicep").read_text(), "the Function App must carry the service's tag"


def test_azd_uses_the_json_parameters_and_they_fit_main_bicep(project: dict[str, object]) -> None:
    # azd prefers <module>.bicepparam when it exists: the az example must not be named main.bicepparam.
    assert not (INFRA / "main.bicepparam").exists()
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    declared = Template(INFRA / "main.bicep").params
    assert set(parameters) <= set(declared)
    required = {name for name, p in declared.items() if p.value is None}
    assert required <= set(parameters), f"azd would prompt for {required - set(parameters)}"
    for name, entry in parameters.items():
        value = entry["value"]
        assert not isinstance(value, str) or ENV_REFERENCE.match(value), f"{name}: {value!r}"
    # The inputs an admin gives: the environment name (baseName), region, the Druva client id; the azd
    # user becomes Secrets Officer so the postprovision hook can fill Key Vault.
    assert parameters["baseName"]["value"] == "${AZURE_ENV_NAME}"
    assert parameters["druvaClientId"]["value"] == "${DRUVA_CLIENT_ID}"
    assert parameters["secretsOfficerPrincipalId"]["value"] == "${AZURE_PRINCIPAL_ID}"
    assert literal(declared["grantGraphPermissions"].value) == "false"
    assert "Secret" not in json.dumps(parameters).replace("secretsOfficer", "")
    # What the hooks and the README name as azd values reach the template, with its defaults.
    assert parameters["scmAllowedIpRanges"]["value"] == "${SCM_ALLOWED_IP_RANGES=}"
    assert parameters["operatorsGroupId"]["value"] == "${OPERATORS_GROUP_ID=}"
    assert parameters["initialMode"]["value"] == "${PROVISIONING_INITIAL_MODE=plan}"
    assert parameters["budgetStartDate"]["value"] == "${BUDGET_START_DATE=}"
    assert parameters["graphClientStatePreviousVersion"]["value"] == "${GRAPH_CLIENT_STATE_PREVIOUS_VERSION=}"
    # Literal values repeat the template's defaults: the file shows what can be tuned, it changes nothing.
    for name, entry in parameters.items():
        if not isinstance(entry["value"], str):
            assert json.dumps(entry["value"]) == literal(declared[name].value), name


def test_every_hook_runs_a_script_that_exists_and_parses(project: dict[str, object]) -> None:
    hooks = project["hooks"]
    assert isinstance(hooks, dict) and set(hooks) == {
        "preprovision",
        "postprovision",
        "predeploy",
        "postdeploy",
    }
    for name, hook in hooks.items():
        command = hook["run"].split()
        assert command[0] == "bash" and (ROOT / command[1]).is_file(), name
        assert hook["continueOnError"] is False, name
        subprocess.run(["bash", "-n", str(ROOT / command[1])], check=True)  # noqa: S603, S607


def test_the_outputs_the_hooks_read_exist() -> None:
    outputs = set(re.findall(r"^output (\w+) ", (INFRA / "main.bicep").read_text(), re.MULTILINE))
    used = set()
    for script in SCRIPTS.glob("*.sh"):
        used |= set(re.findall(r"azd_(?:optional_)?output (\w+)", script.read_text()))
    assert {"managedIdentityPrincipalId", "keyVaultName", "bootstrapRoleAssignmentId"} <= used
    assert used <= outputs


def test_the_mappings_file_is_checked_before_provisioning(project: dict[str, object]) -> None:
    hooks = project["hooks"]
    assert isinstance(hooks, dict)
    preprovision = (ROOT / hooks["preprovision"]["run"].split()[1]).read_text()
    assert "check_mappings.py" in preprovision and '"$root/mappings.yaml"' in preprovision
    # Checked first: before anything that needs az or the network.
    assert preprovision.index("check_mappings.py") < preprovision.index("pin_to_azd\n")


def test_every_hook_pins_azd_s_subscription() -> None:
    for hook in ("azd-preprovision.sh", "azd-postprovision.sh", "azd-postdeploy.sh"):
        assert "\npin_to_azd\n" in (SCRIPTS / hook).read_text(), hook
    assert "az " not in (SCRIPTS / "azd-predeploy.sh").read_text()  # no az call there to pin


def test_azd_environments_are_ignored_and_no_secret_is_sent_there() -> None:
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert ".azure/" in ignored
    # azd keeps its environment in plain text under .azure/: no script or document may suggest storing a
    # secret there (the Druva secret is asked for, or given in the shell for one command).
    documents = [INFRA / "README.md", ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    texts = [*SCRIPTS.iterdir(), *documents, AZURE_YAML]
    storing = re.compile(r"azd env set\s+\S*(SECRET|PASSWORD|TOKEN|CLIENT_STATE)\b", re.IGNORECASE)
    for path in texts:
        if path.is_file():
            assert not storing.search(path.read_text()), path


def test_the_grant_script_grants_what_the_bicep_module_would() -> None:
    script = (SCRIPTS / "grant-graph-permissions.sh").read_text()
    roles = re.search(r"^ROLES=\(([^)]*)\)", script, re.MULTILINE)
    module = (INFRA / "modules" / "graph-app-roles.bicep").read_text()
    assert roles is not None
    assert sorted(roles.group(1).split()) == sorted(re.findall(r"appRole\.value == '([\w.]+)'", module))
    assert "graph_waiting POST" in script  # waits out Entra replication, never a refusal (test_hooks.py)
    assert "already granted" in script  # idempotent


def test_the_client_state_is_generated_once_and_never_rotated_by_a_redeploy() -> None:
    script = (SCRIPTS / "azd-postprovision.sh").read_text()
    generate = script.index("secrets.token_urlsafe")
    assert script.index("if has_secret graph-client-state") < generate
    assert 'echo "$secret"' not in script and "--value" not in script  # secrets never on a command line
