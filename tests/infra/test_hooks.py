"""The azd hooks and the Graph grant script, run for real by bash against stub ``az`` and ``azd``.

The stubs are small Python programs put first on ``PATH``. ``azd`` keeps its environment in a JSON file
(``env get-value``/``env set``); ``az`` logs every call (its argv, what it read on stdin, the header file
it was handed) and answers from canned rules: the first rule whose strings all occur in the command line
gives stdout, stderr and the exit status. No network, no Azure: what is shown is what the scripts do
with the answers Azure and Graph give (a 403 refusal, a 404 of an identity not replicated yet, ...).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "infra" / "scripts"

SUB = "11111111-1111-1111-1111-111111111111"
OTHER_SUB = "99999999-9999-9999-9999-999999999999"  # az's own default: never the one used
TENANT = "22222222-2222-2222-2222-222222222222"
MI = "33333333-3333-3333-3333-333333333333"
GRAPH_SP = "44444444-4444-4444-4444-444444444444"
TOKEN = "graph-token-of-the-tenant"
ROLE_IDS = {
    "User.Read.All": "role-user",
    "Group.Read.All": "role-group",
    "MailboxSettings.Read": "role-mailbox",
}
BOOTSTRAP = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Authorization/roleAssignments/abc"
REFUSED = (
    'Forbidden({"error":{"code":"Authorization_RequestDenied",'
    '"message":"Insufficient privileges to complete the operation."}})'
)
NOT_REPLICATED = (
    'Not Found({"error":{"code":"Request_ResourceNotFound","message":"Resource '
    f"'{MI}' does not exist or one of its queried reference-property objects are not present.\"}}}})"
)
NOT_A_VALID_REFERENCE = (
    'Bad Request({"error":{"code":"Request_BadRequest","message":"Not a valid reference update."}})'
)
# Permanent errors whose text says "not found": retrying them only delays the failure by ten minutes.
NO_SUCH_PERMISSION = (
    'Bad Request({"error":{"code":"Request_BadRequest","message":"Permission being assigned was not found '
    "on application '00000003-0000-0000-c000-000000000000'.\"}})"
)
NO_SUCH_ROLE_SOURCE = (
    'Not Found({"error":{"code":"Request_ResourceNotFound","message":"Resource '
    f"'{GRAPH_SP}' does not exist or one of its queried reference-property objects are not present.\"}}}})"
)
BLOCKED_TOKEN = (
    "ERROR: AADSTS53003: Access has been blocked by Conditional Access policies. The access policy does not "
    "allow token issuance. Trace ID: 0 Correlation ID: 0 Timestamp: 2026-11-02 10:00:00Z\n"
    "Interactive authentication is needed. Please run:\naz login --scope https://graph.microsoft.com//.default\n"
)

STUB = """
import json, os, sys
from pathlib import Path

state = Path(os.environ["STUB_STATE"])
program, argv = Path(sys.argv[0]).name, sys.argv[1:]
call = {"program": program, "argv": argv}
if "/dev/stdin" in argv:
    call["stdin"] = sys.stdin.read()
if "--headers" in argv:
    value = argv[argv.index("--headers") + 1]
    call["headers"] = Path(value[1:]).read_text() if value.startswith("@") else value
with (state / "calls.jsonl").open("a") as log:
    log.write(json.dumps(call) + "\\n")

if program == "azd" and argv[:2] == ["env", "get-value"]:
    values = json.loads((state / "env.json").read_text())
    if argv[2] in values:
        print(values[argv[2]])
        sys.exit(0)
    print(f"ERROR: key '{argv[2]}' not found in the environment values", file=sys.stderr)
    sys.exit(1)
if program == "azd" and argv[:2] == ["env", "set"]:
    values = json.loads((state / "env.json").read_text())
    values[argv[2]] = argv[3]
    (state / "env.json").write_text(json.dumps(values))
    sys.exit(0)

line = " ".join(argv)
rules = json.loads((state / "rules.json").read_text())
for rule in rules:
    if rule["program"] == program and all(part in line for part in rule["match"]):
        if rule.get("times") is not None:
            if rule["times"] == 0:
                continue
            rule["times"] -= 1
            (state / "rules.json").write_text(json.dumps(rules))
        sys.stdout.write(rule.get("stdout", ""))
        sys.stderr.write(rule.get("stderr", ""))
        sys.exit(rule.get("exit", 0))
sys.exit(0)
"""


def rule(
    program: str, *match: str, stdout: str = "", stderr: str = "", code: int = 0, times: int | None = None
) -> dict[str, Any]:
    """Answers the ``program`` calls whose command line holds every string of ``match``."""
    return {
        "program": program,
        "match": list(match),
        "stdout": stdout,
        "stderr": stderr,
        "exit": code,
        "times": times,
    }


def azure_rules(*, post: dict[str, Any] | None = None, held: str = "") -> list[dict[str, Any]]:
    """A tenant where az is signed in (default subscription OTHER_SUB), the identity exists, holds
    ``held`` and every grant answers ``post`` (success by default); Key Vault has no secret yet."""
    graph = "https://graph.microsoft.com/v1.0"
    return [
        rule("az", "account show --subscription", SUB, "--query tenantId", stdout=f"{TENANT}\n"),
        rule("az", "account show --subscription", stderr="Subscription not found", code=1),
        rule("az", "account show", "--query tenantId", stdout=f"{TENANT}\n"),
        rule("az", "account show", stdout=f"{OTHER_SUB}\n"),
        rule("az", "account get-access-token", f"--tenant {TENANT}", stdout=f"{TOKEN}\n"),
        rule("az", "rest", f"{graph}/servicePrincipals(appId=", stdout=f"{GRAPH_SP}\n"),
        rule("az", "rest", "--method GET", f"{graph}/servicePrincipals/{MI}?", stdout=f"{MI}\n"),
        rule("az", "rest", "--method GET", f"{graph}/servicePrincipals/{MI}/appRoleAssignments", stdout=held),
        *[
            rule(
                "az", "rest", f"{graph}/servicePrincipals/{GRAPH_SP}?", f"value=='{role}'", stdout=f"{id_}\n"
            )
            for role, id_ in ROLE_IDS.items()
        ],
        post or rule("az", "rest", "--method POST"),
        rule("az", "keyvault secret show", code=3, stderr="SecretNotFound"),
        rule(
            "az",
            "functionapp show",
            stdout=f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Web/sites/app\n",
        ),
    ]


AZD_ENV = {
    "AZURE_SUBSCRIPTION_ID": SUB,
    "AZURE_TENANT_ID": TENANT,
    "AZURE_RESOURCE_GROUP": "rg",
    "managedIdentityPrincipalId": MI,
    "keyVaultName": "kv-prov",
    "functionAppName": "func-prov",
    "bootstrapRoleAssignmentId": BOOTSTRAP,
    "budgetStartDate": "2026-11-01",
    "SCM_ALLOWED_IP_RANGES": "203.0.113.7/32",
}


@dataclass
class Run:
    status: int
    stdout: str
    stderr: str
    seconds: float
    calls: list[dict[str, Any]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def az(self, *words: str) -> list[dict[str, Any]]:
        """The az calls whose command line holds every one of ``words``."""
        return [
            c for c in self.calls if c["program"] == "az" and all(w in " ".join(c["argv"]) for w in words)
        ]

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Deployment:
    """A copy of the repository's deployment scripts in a temporary tree, with stub az and azd."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "state"
        self.state.mkdir()
        (root / "infra").mkdir()
        shutil.copytree(SCRIPTS, root / "infra" / "scripts")
        bin_dir = root / "bin"
        bin_dir.mkdir()
        for program in ("az", "azd"):
            stub = bin_dir / program
            stub.write_text(f"#!{sys.executable}\n{STUB}")
            stub.chmod(0o755)
        self.path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
        self.azd_env(AZD_ENV)
        self.rules(azure_rules())
        (root / "mappings.yaml").write_text((ROOT / "examples" / "mappings.yaml").read_text())

    def azd_env(self, values: dict[str, str]) -> None:
        (self.state / "env.json").write_text(json.dumps(values))

    def rules(self, rules: list[dict[str, Any]]) -> None:
        (self.state / "rules.json").write_text(json.dumps(rules))

    def run(self, script: str, *args: str, **environment: str) -> Run:
        calls = self.state / "calls.jsonl"
        calls.unlink(missing_ok=True)
        env = {
            "PATH": self.path,
            "HOME": str(self.root),
            "STUB_STATE": str(self.state),
            "PYTHON": sys.executable,
            "PYTHONPATH": str(ROOT),  # the product's own mappings loader, as after `pip install`
            **environment,
        }
        started = time.monotonic()
        done = subprocess.run(  # noqa: S603
            ["bash", str(self.root / "infra" / "scripts" / script), *args],  # noqa: S607
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        logged = [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
        values = json.loads((self.state / "env.json").read_text())
        return Run(done.returncode, done.stdout, done.stderr, time.monotonic() - started, logged, values)


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    return Deployment(tmp_path)


def graph_call(call: dict[str, Any]) -> bool:
    return any(a.startswith("https://graph.microsoft.com/") for a in call["argv"])


def assert_pinned(run: Run) -> None:
    """Every az call runs against azd's subscription; a Graph call carries a token of azd's tenant."""
    assert run.az(), "no az call at all"
    for call in run.az():
        argv = call["argv"]
        if argv[:2] == ["account", "get-access-token"]:
            assert argv[argv.index("--tenant") + 1] == TENANT, argv
        elif graph_call(call):
            assert TOKEN in call["headers"] and TOKEN not in " ".join(argv), argv
        else:
            assert "--subscription" in argv and argv[argv.index("--subscription") + 1] == SUB, argv


def assert_handover(text: str) -> None:
    for needed in (
        MI,
        TENANT,
        "User.Read.All",
        "Group.Read.All",
        "MailboxSettings.Read",
        f"az login --tenant {TENANT} --allow-no-subscriptions",
        f"infra/scripts/grant-graph-permissions.sh --tenant {TENANT} {MI}",
        "Privileged Role Administrator",
    ):
        assert needed in text, needed


# ----------------------------------------------------------------------------------------------------
# The Graph grant
# ----------------------------------------------------------------------------------------------------


def refused_post() -> dict[str, Any]:
    return rule("az", "rest", "--method POST", stderr=REFUSED, code=1)


def test_a_refused_grant_stops_at_once_with_the_hand_over(deployment: Deployment) -> None:
    deployment.rules(azure_rules(post=refused_post()))
    # The real pause between attempts (30 s): a retried refusal would show in the time taken.
    run = deployment.run("grant-graph-permissions.sh", "--tenant", TENANT, MI, GRANT_PAUSE_SECONDS="30")
    assert run.status == 3, run.output
    assert len(run.az("rest", "--method POST")) == 1, "a refusal is not retried"
    assert run.seconds < 20 and "retrying" not in run.output
    assert "403" in run.stderr
    assert_handover(run.stderr)


def test_the_grant_waits_out_replication_then_grants_the_three_roles(deployment: Deployment) -> None:
    rules = azure_rules()
    rules.insert(0, rule("az", "rest", f"servicePrincipals/{MI}?", stderr=NOT_REPLICATED, code=1, times=2))
    deployment.rules(rules)
    run = deployment.run(
        "grant-graph-permissions.sh", "--new-identity", "--tenant", TENANT, MI, GRANT_PAUSE_SECONDS="0"
    )
    assert run.status == 0, run.output
    assert len(run.az("rest", f"servicePrincipals/{MI}?")) == 3  # two 404s, then found
    posts = run.az("rest", "--method POST")
    bodies = [json.loads(c["argv"][c["argv"].index("--body") + 1]) for c in posts]
    assert bodies == [
        {"principalId": MI, "resourceId": GRAPH_SP, "appRoleId": role_id} for role_id in ROLE_IDS.values()
    ]
    for role in ROLE_IDS:
        assert f"{role}: granted" in run.stdout
    # The token of the tenant travels in a file, never on a command line.
    assert all(TOKEN in c["headers"] for c in run.az("rest"))
    assert not any(TOKEN in " ".join(c["argv"]) for c in run.calls)


@pytest.mark.parametrize("error", [NOT_A_VALID_REFERENCE, NOT_REPLICATED], ids=["invalid reference", "404"])
def test_a_grant_about_an_identity_graph_has_shown_waits_out_replication(
    deployment: Deployment, error: str
) -> None:
    # Graph found the identity, then a replica that has not caught up refuses the assignment: replication,
    # waited for even without --new-identity (the id is proven right).
    rules = azure_rules()
    rules.insert(0, rule("az", "rest", "--method POST", stderr=error, code=1, times=2))
    deployment.rules(rules)
    run = deployment.run("grant-graph-permissions.sh", "--tenant", TENANT, MI, GRANT_PAUSE_SECONDS="0")
    assert run.status == 0, run.output
    assert len(run.az("rest", "--method POST")) == 5  # two refusals of the first, then the three roles
    assert run.stderr.count("retrying") == 2


@pytest.mark.parametrize(
    ("failing", "error"),
    [
        (rule("az", "rest", "--method POST", stderr=NO_SUCH_PERMISSION, code=1), "Permission being assigned"),
        (rule("az", "rest", f"servicePrincipals/{GRAPH_SP}?", stderr=NO_SUCH_ROLE_SOURCE, code=1), GRAPH_SP),
        (rule("az", "rest", "servicePrincipals(appId=", stderr="ERROR: Not Found", code=1), "Not Found"),
    ],
    ids=["400 permission not found", "404 of another object", "a bare Not Found"],
)
def test_a_permanent_error_saying_not_found_fails_at_once_with_graph_s_words(
    deployment: Deployment, failing: dict[str, Any], error: str
) -> None:
    # Even for a new identity (replication waited for), only its own symptoms are retried.
    rules = azure_rules()
    rules.insert(0, failing)
    deployment.rules(rules)
    run = deployment.run(
        "grant-graph-permissions.sh", "--new-identity", "--tenant", TENANT, MI, GRANT_PAUSE_SECONDS="30"
    )
    assert run.status == 1, run.output
    assert "retrying" not in run.output and run.seconds < 20, "a permanent error is not retried"
    assert len([c for c in run.calls if all(m in " ".join(c["argv"]) for m in failing["match"])]) == 1
    assert "could not" in run.stderr and error in run.stderr


def test_a_mistyped_principal_id_fails_at_once(deployment: Deployment) -> None:
    # A 404 for the principal id, run by hand (no --new-identity): a wrong id, not replication.
    rules = azure_rules()
    rules.insert(0, rule("az", "rest", f"servicePrincipals/{MI}?", stderr=NOT_REPLICATED, code=1))
    deployment.rules(rules)
    run = deployment.run("grant-graph-permissions.sh", "--tenant", TENANT, MI, GRANT_PAUSE_SECONDS="30")
    assert run.status == 1, run.output
    assert "retrying" not in run.output and run.seconds < 20
    assert len(run.az("rest", f"servicePrincipals/{MI}?")) == 1
    assert "Request_ResourceNotFound" in run.stderr  # Graph's words
    assert "managedIdentityPrincipalId" in run.stderr and "--new-identity" in run.stderr
    assert not run.az("rest", "--method POST")


def test_a_principal_id_that_is_no_guid_is_refused_before_any_call(deployment: Deployment) -> None:
    run = deployment.run("grant-graph-permissions.sh", "--tenant", TENANT, MI[:-1])
    assert run.status == 2
    assert f"'{MI[:-1]}' is not a principal id" in run.stderr
    assert not run.calls


def test_the_grant_leaves_held_roles_alone(deployment: Deployment) -> None:
    deployment.rules(azure_rules(held="\n".join(ROLE_IDS.values()) + "\n"))
    run = deployment.run("grant-graph-permissions.sh", "--tenant", TENANT, MI)
    assert run.status == 0, run.output
    assert not run.az("rest", "--method POST")
    assert run.stdout.count("already granted") == 3


def test_a_refused_read_is_a_refusal_too(deployment: Deployment) -> None:
    rules = azure_rules()
    rules.insert(0, rule("az", "rest", "appRoleAssignments", "--method GET", stderr=REFUSED, code=1))
    deployment.rules(rules)
    run = deployment.run("grant-graph-permissions.sh", "--tenant", TENANT, MI, GRANT_PAUSE_SECONDS="30")
    assert run.status == 3 and run.seconds < 20
    assert_handover(run.stderr)


def test_the_hand_over_alone_calls_nothing(deployment: Deployment) -> None:
    run = deployment.run("grant-graph-permissions.sh", "--print-handover", "--tenant", TENANT, MI)
    assert run.status == 0
    assert not run.az()
    assert_handover(run.stderr)


# ----------------------------------------------------------------------------------------------------
# postprovision: grant (or hand over), secrets, the bootstrap role, the budget's start
# ----------------------------------------------------------------------------------------------------


def test_postprovision_without_directory_rights_hands_over_and_finishes(deployment: Deployment) -> None:
    deployment.rules(azure_rules(post=refused_post()))
    run = deployment.run("azd-postprovision.sh", DRUVA_CLIENT_SECRET="druva-secret-value")
    assert run.status == 0, run.output
    assert_handover(run.stderr)
    assert len(run.az("rest", "--method POST")) == 1
    stored = {c["argv"][c["argv"].index("--name") + 1]: c["stdin"] for c in run.az("keyvault secret set")}
    assert set(stored) == {"graph-client-state", "druva-client-secret"}
    assert stored["druva-client-secret"] == "druva-secret-value"
    assert len(stored["graph-client-state"]) >= 48
    assert not any("druva-secret-value" in " ".join(c["argv"]) for c in run.calls)
    assert "not granted yet" in run.stderr
    assert_pinned(run)


def no_graph_token() -> list[dict[str, Any]]:
    rules = azure_rules()
    rules.insert(0, rule("az", "account get-access-token", stderr=BLOCKED_TOKEN, code=1))
    return rules


def failing_grant() -> list[dict[str, Any]]:
    return azure_rules(post=rule("az", "rest", "--method POST", stderr=NO_SUCH_PERMISSION, code=1))


@pytest.mark.parametrize(
    ("rules", "reason"),
    [(no_graph_token, "AADSTS53003"), (failing_grant, "Permission being assigned was not found")],
    ids=["no Graph token", "a permanent Graph error"],
)
def test_postprovision_hands_over_on_any_failure_of_the_grant_and_finishes(
    deployment: Deployment, rules: Any, reason: str
) -> None:
    deployment.rules(rules())
    run = deployment.run("azd-postprovision.sh", DRUVA_CLIENT_SECRET="s", GRANT_PAUSE_SECONDS="30")
    assert run.status == 0, run.output
    assert reason in run.stderr  # why, then what to hand over
    assert_handover(run.stderr)
    assert run.stderr.index(reason) < run.stderr.index("=== Microsoft Graph permissions: hand this")
    assert "retrying" not in run.output and run.seconds < 20
    assert {c["argv"][c["argv"].index("--name") + 1] for c in run.az("keyvault secret set")} == {
        "graph-client-state",
        "druva-client-secret",
    }
    assert run.az("role assignment delete")
    assert "not granted yet" in run.stderr
    assert_pinned(run)


@pytest.mark.parametrize("rules", [no_graph_token, failing_grant], ids=["no Graph token", "a Graph error"])
def test_postprovision_with_the_grant_required_stops_on_any_failure(
    deployment: Deployment, rules: Any
) -> None:
    deployment.azd_env({**AZD_ENV, "GRAPH_GRANT": "require"})
    deployment.rules(rules())
    run = deployment.run("azd-postprovision.sh", DRUVA_CLIENT_SECRET="s")
    assert run.status == 1
    assert not run.az("keyvault secret set")


def test_postprovision_waits_for_the_new_identity_to_replicate(deployment: Deployment) -> None:
    rules = azure_rules()
    rules.insert(0, rule("az", "rest", f"servicePrincipals/{MI}?", stderr=NOT_REPLICATED, code=1, times=2))
    deployment.rules(rules)
    run = deployment.run("azd-postprovision.sh", DRUVA_CLIENT_SECRET="s", GRANT_PAUSE_SECONDS="0")
    assert run.status == 0, run.output
    assert len(run.az("rest", f"servicePrincipals/{MI}?")) == 3
    assert len(run.az("rest", "--method POST")) == 3
    assert "hand this" not in run.stderr


def test_postprovision_stops_when_replication_outlasts_the_wait(deployment: Deployment) -> None:
    rules = azure_rules()
    rules.insert(0, rule("az", "rest", f"servicePrincipals/{MI}?", stderr=NOT_REPLICATED, code=1))
    deployment.rules(rules)
    run = deployment.run(
        "azd-postprovision.sh", DRUVA_CLIENT_SECRET="s", GRANT_PAUSE_SECONDS="0", GRANT_ATTEMPTS="3"
    )
    assert run.status == 1
    assert len(run.az("rest", f"servicePrincipals/{MI}?")) == 3
    assert "azd provision" in run.stderr
    assert not run.az("keyvault secret set")


def test_postprovision_removes_the_bootstrap_role_after_the_secrets(deployment: Deployment) -> None:
    run = deployment.run("azd-postprovision.sh", DRUVA_CLIENT_SECRET="s")
    assert run.status == 0, run.output
    deletes = run.az("role assignment delete")
    assert [c["argv"][c["argv"].index("--ids") + 1] for c in deletes] == [BOOTSTRAP]
    order = [i for i, c in enumerate(run.calls) if "keyvault secret set" in " ".join(c["argv"])]
    assert order and run.calls.index(deletes[0]) > max(order), "the role goes only once the secrets are in"
    assert_pinned(run)


def test_postprovision_keeps_the_role_when_a_secret_could_not_be_stored(deployment: Deployment) -> None:
    run = deployment.run("azd-postprovision.sh")  # no terminal, no DRUVA_CLIENT_SECRET
    assert run.status == 1
    assert not run.az("role assignment delete")
    assert "read -rs DRUVA_CLIENT_SECRET" in run.stderr
    assert "azd env set" not in run.stderr  # never a secret in the azd environment


def test_postprovision_with_the_grant_skipped_calls_no_graph(deployment: Deployment) -> None:
    env = {**AZD_ENV, "GRAPH_GRANT": "skip"}
    deployment.azd_env(env)
    run = deployment.run("azd-postprovision.sh", DRUVA_CLIENT_SECRET="s")
    assert run.status == 0, run.output
    assert not [c for c in run.az() if graph_call(c) or "get-access-token" in c["argv"]]
    assert "GRAPH_GRANT=skip" in run.stdout
    assert_handover(run.stderr)
    assert len(run.az("keyvault secret set")) == 2


def test_postprovision_with_the_grant_required_stops_on_a_refusal(deployment: Deployment) -> None:
    deployment.azd_env({**AZD_ENV, "GRAPH_GRANT": "require"})
    deployment.rules(azure_rules(post=refused_post()))
    run = deployment.run("azd-postprovision.sh", DRUVA_CLIENT_SECRET="s")
    assert run.status == 3
    assert not run.az("keyvault secret set")


def test_postprovision_refuses_an_unknown_grant_mode(deployment: Deployment) -> None:
    deployment.azd_env({**AZD_ENV, "GRAPH_GRANT": "maybe"})
    run = deployment.run("azd-postprovision.sh", DRUVA_CLIENT_SECRET="s")
    assert run.status == 1 and "GRAPH_GRANT" in run.stderr
    assert not run.az("rest")


def test_postprovision_leaves_existing_secrets_and_records_the_budget_start(deployment: Deployment) -> None:
    rules = [r for r in azure_rules() if r["match"] != ["keyvault secret show"]]
    deployment.rules(rules)  # both secrets present
    run = deployment.run("azd-postprovision.sh")
    assert run.status == 0, run.output
    assert not run.az("keyvault secret set")
    assert run.stdout.count("left as it is") == 2
    assert run.env["BUDGET_START_DATE"] == "2026-11-01"


def test_postprovision_warns_about_a_secret_stored_by_azd(deployment: Deployment) -> None:
    deployment.azd_env({**AZD_ENV, "DRUVA_CLIENT_SECRET": "in-plain-text"})
    run = deployment.run("azd-postprovision.sh", DRUVA_CLIENT_SECRET="s")
    assert run.status == 0
    assert "plain text under .azure/" in run.stderr


# ----------------------------------------------------------------------------------------------------
# Every hook runs against azd's subscription and tenant
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hook", ["azd-preprovision.sh", "azd-postprovision.sh", "azd-postdeploy.sh"])
def test_every_az_call_of_a_hook_carries_azd_s_subscription(deployment: Deployment, hook: str) -> None:
    run = deployment.run(hook, DRUVA_CLIENT_SECRET="s")
    assert run.status == 0, run.output
    assert_pinned(run)
    assert OTHER_SUB not in json.dumps(run.calls)


@pytest.mark.parametrize("hook", ["azd-preprovision.sh", "azd-postprovision.sh", "azd-postdeploy.sh"])
def test_a_hook_without_azd_s_subscription_stops_before_any_change(deployment: Deployment, hook: str) -> None:
    deployment.azd_env({k: v for k, v in AZD_ENV.items() if k != "AZURE_SUBSCRIPTION_ID"})
    run = deployment.run(hook, DRUVA_CLIENT_SECRET="s")
    assert run.status != 0
    assert "AZURE_SUBSCRIPTION_ID" in run.stderr
    assert not run.az()


def test_a_subscription_az_cannot_see_stops_the_hook(deployment: Deployment) -> None:
    deployment.azd_env({**AZD_ENV, "AZURE_SUBSCRIPTION_ID": "55555555-5555-5555-5555-555555555555"})
    run = deployment.run("azd-postprovision.sh", DRUVA_CLIENT_SECRET="s")
    assert run.status == 1
    assert "az login --tenant" in run.stderr
    assert [c["argv"][:2] for c in run.az()] == [["account", "show"]]


def test_a_tenant_that_does_not_own_the_subscription_stops_the_hook(deployment: Deployment) -> None:
    deployment.azd_env({**AZD_ENV, "AZURE_TENANT_ID": "66666666-6666-6666-6666-666666666666"})
    run = deployment.run("azd-postdeploy.sh")
    assert run.status == 1
    assert "belongs to tenant" in run.stderr
    assert not run.az("functionapp")


def test_a_missing_tenant_is_recorded_from_the_subscription(deployment: Deployment) -> None:
    deployment.azd_env({k: v for k, v in AZD_ENV.items() if k != "AZURE_TENANT_ID"})
    run = deployment.run("azd-postdeploy.sh")
    assert run.status == 0, run.output
    assert run.env["AZURE_TENANT_ID"] == TENANT


# ----------------------------------------------------------------------------------------------------
# preprovision: the mappings file and the deployment's inputs, before anything is provisioned
# ----------------------------------------------------------------------------------------------------


EXAMPLE_MAPPINGS = len(yaml.safe_load((ROOT / "examples" / "mappings.yaml").read_text())["mappings"])


def test_preprovision_passes_a_valid_mappings_file(deployment: Deployment) -> None:
    run = deployment.run("azd-preprovision.sh")
    assert run.status == 0, run.output
    assert f"{EXAMPLE_MAPPINGS} mapping(s), valid" in run.stdout


def test_preprovision_stops_without_a_mappings_file(deployment: Deployment) -> None:
    (deployment.root / "mappings.yaml").unlink()
    run = deployment.run("azd-preprovision.sh")
    assert run.status == 1
    assert "mappings.yaml: missing. Copy examples/mappings.yaml" in run.stderr
    assert "stopped before provisioning" in run.stderr
    assert not run.az(), "checked before anything else"


@pytest.mark.parametrize(
    ("broken", "said"),
    [
        ("mappings: [\n  - name: x\n", "mappings.yaml"),  # not YAML
        ("mappings:\n  - name: Everyone\n    match: {all: true}\n", "target"),  # no target
        ("mappings: []\n", "mappings"),  # nothing to map
    ],
    ids=["not YAML", "no target", "empty"],
)
def test_preprovision_stops_on_a_broken_mappings_file(deployment: Deployment, broken: str, said: str) -> None:
    (deployment.root / "mappings.yaml").write_text(broken)
    run = deployment.run("azd-preprovision.sh")
    assert run.status == 1
    assert said in run.stderr and "stopped before provisioning" in run.stderr
    assert not run.az()


@pytest.fixture(scope="module")
def without_requirements(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """The hooks' environment for a Python of the right version that lacks the app's requirements: a venv
    with nothing installed, the same with PyYAML alone, and one where the app itself is not importable."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)  # noqa: S603
    python = str(venv / "bin" / "python")
    yaml_only = tmp_path_factory.mktemp("yaml-only")
    (yaml_only / "yaml").symlink_to(Path(yaml.__file__).parent, target_is_directory=True)
    environments = {
        "no PyYAML, no pydantic": {"PYTHON": python},
        "PyYAML without pydantic": {"PYTHON": python, "PYTHONPATH": f"{yaml_only}:{ROOT}"},
        "app not importable": {"PYTHONPATH": ""},
    }
    for imports, environment in [("yaml", environments["no PyYAML, no pydantic"]), ("pydantic", {})]:
        lacks = subprocess.run(  # noqa: S603
            [python, "-c", f"import {imports}"], env=environment, capture_output=True, check=False
        )
        assert lacks.returncode != 0, f"the bare venv must lack {imports}"
    return environments


BROKEN_MAPPINGS = "mappings: [{name: x}]\n"  # valid YAML, one "mapping", refused by the app's loader


@pytest.mark.parametrize("hook", ["azd-preprovision.sh", "azd-predeploy.sh"])
@pytest.mark.parametrize(
    "python", ["no PyYAML, no pydantic", "PyYAML without pydantic", "app not importable"]
)
@pytest.mark.parametrize("mappings", ["broken", "valid"])
def test_the_mappings_check_fails_closed_without_the_app_s_requirements(
    deployment: Deployment,
    without_requirements: dict[str, dict[str, str]],
    hook: str,
    python: str,
    mappings: str,
) -> None:
    # What the hooks cannot validate with the app's own loader they never pass: not even a valid file.
    text = BROKEN_MAPPINGS if mappings == "broken" else (ROOT / "examples" / "mappings.yaml").read_text()
    (deployment.root / "mappings.yaml").write_text(text)
    run = deployment.run(hook, **without_requirements[python])
    assert run.status == 1, run.output
    assert "not checked, so not passed" in run.stderr
    assert "pip install -r requirements.txt" in run.stderr and "venv" in run.stderr
    assert "fix mappings.yaml" not in run.stderr  # the file may well be fine: the Python is not
    assert "valid" not in run.stdout and "mapping(s)" not in run.output
    assert ("stopped before provisioning" if hook == "azd-preprovision.sh" else "nothing was uploaded") in (
        run.stderr
    )
    assert not run.az()


def test_with_the_requirements_the_broken_file_is_refused_by_the_app_s_loader(deployment: Deployment) -> None:
    (deployment.root / "mappings.yaml").write_text(BROKEN_MAPPINGS)
    run = deployment.run("azd-preprovision.sh")
    assert run.status == 1
    assert "target" in run.stderr and "fix mappings.yaml first" in run.stderr


OLD_PYTHON = """
import collections, runpy, sys

# Python 3.6, as far as the hooks can tell: its version, and its compiler's refusal of what needs 3.7.
VersionInfo = collections.namedtuple("VersionInfo", "major minor micro releaselevel serial")
sys.version_info = VersionInfo(3, 6, 15, "final", 0)
sys.version = "3.6.15 (default, Nov 1 2026, 10:00:00) [GCC 12.2.0]"
arguments = sys.argv[1:]
if arguments[0] == "-c":
    sys.argv = ["-c", *arguments[2:]]
    exec(compile(arguments[1], "<string>", "exec"), {"__name__": "__main__"})
    sys.exit(0)
lines = open(arguments[0]).read().splitlines()
for number, line in enumerate(lines, start=1):
    if line.strip() == "from __future__ import annotations":
        print(f'  File "{arguments[0]}", line {number}', file=sys.stderr)
        print(f"    {line}", file=sys.stderr)
        print("    ^", file=sys.stderr)
        print("SyntaxError: future feature annotations is not defined", file=sys.stderr)
        sys.exit(1)
sys.argv = arguments
runpy.run_path(arguments[0], run_name="__main__")
"""


def installed_python(version: str) -> Path | None:
    """A real interpreter of that version, where pyenv has one (developers' machines, CI)."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = sorted(root.glob(f"{version}.*/bin/python{version}")) if root.is_dir() else []
    return found[-1] if found else None


@pytest.mark.parametrize("hook", ["azd-preprovision.sh", "azd-predeploy.sh"])
@pytest.mark.parametrize("version", ["3.6 (stand-in)", "2.7", "3.6", "3.10"])
def test_a_python_too_old_for_the_checker_is_named_as_such(
    deployment: Deployment, hook: str, version: str
) -> None:
    if version == "3.6 (stand-in)":
        python = deployment.root / "python3.6"
        python.write_text(f"#!{sys.executable}\n{OLD_PYTHON}")
        python.chmod(0o755)
        version = "3.6"
    else:
        found = installed_python(version)
        if found is None:
            pytest.skip(f"no Python {version} installed here (the stand-in covers 3.6)")
        python = found
    run = deployment.run(hook, PYTHON=str(python))
    assert run.status == 1, run.output
    assert f"is Python {version}, too old" in run.stderr
    assert "Python 3.11 or later" in run.stderr and "requirements.txt" in run.stderr
    assert "mappings.yaml" not in run.stderr.replace("mappings.yaml was not checked", "")
    assert "SyntaxError" not in run.stderr
    assert not run.az()


def test_a_python_that_cannot_run_is_named(deployment: Deployment) -> None:
    run = deployment.run("azd-preprovision.sh", PYTHON=str(deployment.root / "no-such-python"))
    assert run.status == 1
    assert "cannot run" in run.stderr and "no-such-python" in run.stderr and "3.11" in run.stderr


def test_the_checker_itself_refuses_a_python_too_old_for_the_app() -> None:
    found = installed_python("3.10")
    if found is None:
        pytest.skip("no Python 3.10 installed here")
    checked = subprocess.run(  # noqa: S603
        [found, SCRIPTS / "check_mappings.py", ROOT / "examples" / "mappings.yaml"],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 3, checked.stderr
    assert "is Python 3.10, too old: the app needs Python 3.11 or later" in checked.stderr


def test_the_minimum_python_is_the_project_s() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    minimum = pyproject["project"]["requires-python"].removeprefix(">=")
    lib = re.search(r"^PYTHON_MIN=([0-9.]+)$", (SCRIPTS / "lib.sh").read_text(), re.MULTILINE)
    checker = re.search(r"^PYTHON_MIN = \((\d+), (\d+)\)", (SCRIPTS / "check_mappings.py").read_text(), re.M)
    assert lib is not None and checker is not None
    assert lib.group(1) == minimum == f"{checker.group(1)}.{checker.group(2)}"


@pytest.mark.parametrize("hook", ["azd-preprovision.sh", "azd-predeploy.sh"])
@pytest.mark.parametrize("kind", ["FIFO", "directory"])
def test_a_mappings_path_that_is_no_regular_file_is_named_as_such(
    deployment: Deployment, hook: str, kind: str
) -> None:
    path = deployment.root / "mappings.yaml"
    path.unlink()
    if kind == "FIFO":
        os.mkfifo(path)
    else:
        path.mkdir()
    run = deployment.run(hook)
    assert run.status == 1
    assert "not a regular file" in run.stderr
    assert ("a FIFO (named pipe)" if kind == "FIFO" else "a directory") in run.stderr
    assert "missing" not in run.stderr
    assert run.seconds < 20  # a FIFO is never opened (it would block)
    assert not run.az()


@pytest.mark.parametrize("ranges", ["", "203.0.113.7", "203.0.113.7/32,not-an-address", "203.0.113.7/32,"])
def test_preprovision_wants_the_addresses_deployments_come_from(deployment: Deployment, ranges: str) -> None:
    values = {**AZD_ENV, "SCM_ALLOWED_IP_RANGES": ranges}
    deployment.azd_env({k: v for k, v in values.items() if v})
    run = deployment.run("azd-preprovision.sh")
    assert run.status == 1
    assert "SCM_ALLOWED_IP_RANGES" in run.stderr


@pytest.mark.parametrize(
    ("entry", "said"),
    [
        ("999.999.999.999/99", "999 (> 255)"),
        ("203.0.113.256/32", "256 (> 255)"),
        ("203.0.113.7/33", "at most /32"),
        (":/1", "not an IPv6 address range"),
        ("2001:db8::/129", "at most /128"),
        ("2001:db8::g/64", "not an IPv6 address range"),
        ("203.0.113/24", "not an IPv4 address range"),
        ("203.0.113.7/", "not a number"),
    ],
)
def test_preprovision_refuses_an_impossible_range_naming_it(
    deployment: Deployment, entry: str, said: str
) -> None:
    deployment.azd_env({**AZD_ENV, "SCM_ALLOWED_IP_RANGES": f"198.51.100.0/24,{entry}"})
    run = deployment.run("azd-preprovision.sh")
    assert run.status == 1, run.output
    assert f"SCM_ALLOWED_IP_RANGES: '{entry}'" in run.stderr and said in run.stderr
    assert "198.51.100.0/24" not in run.stderr  # the good entry is not blamed


@pytest.mark.parametrize("entry", ["0.0.0.0/0", "::/0", "203.0.113.7/0"])
def test_preprovision_refuses_scm_open_to_every_address_unless_told_so(
    deployment: Deployment, entry: str
) -> None:
    values = {**AZD_ENV, "SCM_ALLOWED_IP_RANGES": f"203.0.113.7/32,{entry}"}
    deployment.azd_env(values)
    run = deployment.run("azd-preprovision.sh")
    assert run.status == 1, run.output
    assert f"'{entry}' is every IPv" in run.stderr and "SCM_ALLOW_ANY" in run.stderr
    deployment.azd_env({**values, "SCM_ALLOW_ANY": "yes"})
    run = deployment.run("azd-preprovision.sh")
    assert run.status == 0, run.output
    assert "warning" in run.stderr and f"'{entry}' is every IPv" in run.stderr
    deployment.azd_env(values)
    assert deployment.run("azd-preprovision.sh", SCM_ALLOW_ANY="yes").status == 0  # from the shell too
    assert deployment.run("azd-preprovision.sh", SCM_ALLOW_ANY="true").status == 1  # only "yes" opens it


def test_preprovision_takes_several_ranges(deployment: Deployment) -> None:
    deployment.azd_env(
        {
            **AZD_ENV,
            "SCM_ALLOWED_IP_RANGES": "203.0.113.7/32, 198.51.100.0/24,2001:db8::/48,::ffff:203.0.113.7/128",
        }
    )
    run = deployment.run("azd-preprovision.sh")
    assert run.status == 0, run.output
    assert not run.stderr


def test_predeploy_checks_the_mappings_file_too(deployment: Deployment) -> None:
    assert deployment.run("azd-predeploy.sh").status == 0
    (deployment.root / "mappings.yaml").unlink()
    run = deployment.run("azd-predeploy.sh")
    assert run.status == 1 and "nothing was uploaded" in run.stderr
