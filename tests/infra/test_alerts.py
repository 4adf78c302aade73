"""infra/modules/alerts.bicep: six alerts, wired to the action group, whose queries read exactly the
telemetry records the code emits (names and values from provisioning/service/telemetry.py), and the
KQL examples of docs/operating.md too. Each check is shown to catch a broken copy."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from provisioning.domain.health import FAILING_PASSES
from provisioning.service import telemetry
from tests.infra.bicep import Template, literal, named, prop, syntax_problems, text
from tests.infra.test_bicep import INFRA, MAIN, expect, is_ref

ALERTS = INFRA / "modules" / "alerts.bicep"
OPERATING = INFRA.parent / "docs" / "operating.md"  # the KQL examples, under "Telemetry"
QUERY_RULE = "Microsoft.Insights/scheduledQueryRules"
DIMENSIONS = (
    telemetry.PASS_DIMENSIONS
    | telemetry.UPKEEP_DIMENSIONS
    | telemetry.ACCOUNT_DIMENSIONS
    | telemetry.REFUSAL_DIMENSIONS
    | telemetry.PLAN_DIMENSIONS
)
EVENTS = {
    telemetry.PASS_EVENT,
    telemetry.UPKEEP_EVENT,
    telemetry.ACCOUNT_EVENT,
    telemetry.REFUSAL_EVENT,
    telemetry.PLAN_EVENT,
}

Check = Callable[[Template], list[str]]


def kql_problems(query: str) -> list[str]:
    """Names and values a KQL query uses that no telemetry record carries."""
    problems: list[str] = []
    named_dimensions = re.findall(r"customDimensions\.(\w+)", query)
    named_dimensions += re.findall(r"customDimensions\[['\"](\w+)['\"]\]", query)
    expect(problems, bool(named_dimensions), f"reads no custom dimension: {query[:80]!r}")
    for name in named_dimensions:
        expect(problems, name in DIMENSIONS, f"customDimensions.{name} is not a dimension the code emits")
    for dimension, allowed in (
        (telemetry.EVENT, EVENTS),
        (telemetry.OUTCOME, telemetry.PASS_OUTCOMES | telemetry.UPKEEP_OUTCOMES | telemetry.ACCOUNT_OUTCOMES),
        (telemetry.DRY_RUN, {"true", "false"}),
    ):
        for value in compared_values(query, dimension):
            expect(problems, value in allowed, f"{dimension} is never {value!r}")
    return problems


def compared_values(query: str, dimension: str) -> list[str]:
    """Values ``dimension`` is compared with (``==``, ``!=``, ``in (...)``)."""
    field = rf"customDimensions(?:\.{dimension}|\[['\"]{dimension}['\"]\])\)?"
    values = re.findall(rf"{field}\s*[!=]=\s*'([^']*)'", query)
    for group in re.findall(rf"{field}\s*!?in\s*\(([^)]*)\)", query):
        values += re.findall(r"'([^']*)'", group)
    return values


def rules(template: Template) -> dict[str, str]:
    """Each scheduled query rule's name and its query as deployed."""
    found = {}
    for rule in template.resources_of_type(QUERY_RULE):
        conditions = prop(rule.value, "properties.criteria.allOf")
        condition = named(conditions)[0] if conditions is not None and named(conditions) else None
        found[rule.name] = template.render(prop(condition, "query")) or ""
    return found


def check_queries_read_the_records_the_code_emits(template: Template) -> list[str]:
    problems: list[str] = []
    for name, query in rules(template).items():
        problems += [f"{name}: {problem}" for problem in kql_problems(query)]
    return problems


def check_each_rule_means_what_it_says(template: Template) -> list[str]:
    problems: list[str] = []
    queries = rules(template)
    passes = f"== '{telemetry.PASS_EVENT}'"
    safety = queries.get("safetyStop", "")
    expect(problems, passes in safety and f"'{telemetry.SAFETY_STOP}'" in safety, "safety stop: outcome")
    succeeded = queries.get("noSuccessfulPass", "")
    expect(
        problems,
        passes in succeeded
        and set(compared_values(succeeded, telemetry.OUTCOME)) == set(telemetry.SUCCEEDED),
        "no successful pass: the outcomes counted as success must be exactly telemetry.SUCCEEDED",
    )
    upkeep = queries.get("upkeepFailing", "")
    expect(
        problems,
        f"== '{telemetry.UPKEEP_EVENT}'" in upkeep
        and f"'{telemetry.UPKEEP_FAILED}'" in upkeep
        and "top 2 by timestamp desc" in upkeep
        and "failed == 2" in upkeep,
        "subscription upkeep: the last two upkeep records both failed",
    )
    failing = queries.get("accountFailing", "")
    expect(
        problems,
        passes in failing
        and f"customDimensions.{telemetry.FAILED_ACCOUNTS}" in failing
        and f"top {FAILING_PASSES} by timestamp desc" in failing
        and f">= {FAILING_PASSES}" in failing,
        f"account failing: named in each of the last {FAILING_PASSES} passes",
    )
    refused = queries.get("druvaRefused", "")
    expect(problems, f"== '{telemetry.REFUSAL_EVENT}'" in refused, "Druva refused: any refusal record")
    return problems


def check_rule_settings(template: Template) -> list[str]:
    problems: list[str] = []
    group = template.one("Microsoft.Insights/actionGroups")
    expect(
        problems,
        set(rules(template))
        == {"safetyStop", "noSuccessfulPass", "upkeepFailing", "accountFailing", "druvaRefused"},
        "the five log alerts",
    )
    for rule in template.resources_of_type(QUERY_RULE):
        body = rule.value
        expect(problems, literal(prop(body, "properties.enabled")) == "true", f"{rule.name}: enabled")
        scopes = prop(body, "properties.scopes")
        expect(
            problems,
            scopes is not None and [text(n) for n in named(scopes)] == ["appInsightsId"],
            f"{rule.name}: scoped to Application Insights (the traces table)",
        )
        groups = prop(body, "properties.actions.actionGroups")
        expect(
            problems,
            groups is not None and [text(n) for n in named(groups)] == [f"{group.name}.id"],
            f"{rule.name}: notifies the action group",
        )
    no_pass = template.resources.get("noSuccessfulPass")
    condition = prop(no_pass.value, "properties.criteria.allOf") if no_pass else None
    first = named(condition)[0] if condition is not None and named(condition) else None
    expect(
        problems,
        no_pass is not None
        and literal(prop(no_pass.value, "properties.windowSize")) == "PT1H"
        and literal(prop(first, "operator")) == "LessThan"
        and literal(prop(first, "threshold")) == "1",
        "no successful pass: fewer than one in a one-hour window",
    )
    receivers = prop(group.value, "properties.emailReceivers")
    receiver = named(receivers)[0] if receivers is not None and named(receivers) else None
    expect(
        problems, is_ref(prop(receiver, "emailAddress"), "alertEmail"), "the action group mails alertEmail"
    )
    email = template.params.get("alertEmail")
    expect(problems, email is not None and email.value is None, "alertEmail must be required")
    return problems


def check_dead_letter_alert(template: Template) -> list[str]:
    problems: list[str] = []
    alert = template.one("Microsoft.Insights/metricAlerts")
    group = template.one("Microsoft.Insights/actionGroups")
    body = alert.value
    conditions = prop(body, "properties.criteria.allOf")
    condition = named(conditions)[0] if conditions is not None and named(conditions) else None
    expect(
        problems,
        literal(prop(condition, "metricName")) == "DeadletteredMessages",
        "metric DeadletteredMessages",
    )
    expect(
        problems,
        literal(prop(condition, "metricNamespace")) == "Microsoft.ServiceBus/namespaces",
        "metric namespace",
    )
    expect(
        problems,
        literal(prop(condition, "operator")) == "GreaterThan"
        and literal(prop(condition, "threshold")) == "0",
        "dead letters above 0",
    )
    dimensions = prop(condition, "dimensions")
    dimension = named(dimensions)[0] if dimensions is not None and named(dimensions) else None
    values = prop(dimension, "values")
    expect(
        problems,
        literal(prop(dimension, "name")) == "EntityName"
        and values is not None
        and [text(n) for n in named(values)] == ["queueName"],
        "only the work queue (EntityName = queueName)",
    )
    scopes = prop(body, "properties.scopes")
    expect(
        problems,
        scopes is not None and [text(n) for n in named(scopes)] == ["serviceBusNamespaceId"],
        "scoped to the namespace",
    )
    actions = prop(body, "properties.actions")
    action = named(actions)[0] if actions is not None and named(actions) else None
    expect(problems, is_ref(prop(action, "actionGroupId"), f"{group.name}.id"), "notifies the action group")
    return problems


def check_main_deploys_the_alerts(template: Template) -> list[str]:
    problems: list[str] = []
    module = next((m for m in template.modules.values() if "modules/alerts.bicep" in text(m.node)), None)
    expect(problems, module is not None, "main.bicep deploys modules/alerts.bicep")
    if module is None:
        return problems
    expect(problems, module.condition is None, "the alerts are always deployed")
    params = prop(module.value, "params")
    insights = template.one("Microsoft.Insights/components").name
    namespace = template.one("Microsoft.ServiceBus/namespaces").name
    queue = template.one("Microsoft.ServiceBus/namespaces/queues").name
    for name, wanted in (
        ("appInsightsId", f"{insights}.id"),
        ("serviceBusNamespaceId", f"{namespace}.id"),
        ("queueName", f"{queue}.name"),
        ("alertEmail", "alertEmail"),
    ):
        expect(problems, is_ref(prop(params, name), wanted), f"alerts module: {name} must be {wanted}")
    email = template.params.get("alertEmail")
    expect(problems, email is not None and email.value is None, "main.bicep: alertEmail must be required")
    return problems


MODULE_CHECKS: list[Check] = [
    check_queries_read_the_records_the_code_emits,
    check_each_rule_means_what_it_says,
    check_rule_settings,
    check_dead_letter_alert,
]


@pytest.mark.parametrize("check", MODULE_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_alerts_module(check: Check) -> None:
    assert check(Template(ALERTS)) == []


def test_main_deploys_the_alerts() -> None:
    assert check_main_deploys_the_alerts(Template(MAIN)) == []


REGRESSIONS: dict[str, tuple[Check, str, str]] = {
    "event renamed in a query": (
        check_queries_read_the_records_the_code_emits,
        "== \\'provisioning.pass\\'",
        "== \\'provisioning.passes\\'",
    ),
    "dimension the code does not emit": (
        check_queries_read_the_records_the_code_emits,
        "customDimensions.failed_accounts",
        "customDimensions.failedAccounts",
    ),
    "an outcome that never happens": (
        check_queries_read_the_records_the_code_emits,
        "== 'failed')",
        "== 'failure')",
    ),
    "success counted from one outcome only": (
        check_each_rule_means_what_it_says,
        "in (\\'ok\\', \\'accounts_failed\\')",
        "in (\\'ok\\')",
    ),
    "two passes instead of three": (check_each_rule_means_what_it_says, "top 3 by", "top 2 by"),
    "refusals read from the account records": (
        check_each_rule_means_what_it_says,
        "== \\'provisioning.refusal\\'",
        "== \\'provisioning.account\\'",
    ),
    "rule without its action group": (
        check_rule_settings,
        "      actionGroups: [\n        actionGroup.id\n      ]\n",
        "      actionGroups: []\n",
    ),
    "a day instead of an hour": (check_rule_settings, "windowSize: 'PT1H'", "windowSize: 'P1D'"),
    "active messages watched instead": (
        check_dead_letter_alert,
        "'DeadletteredMessages'",
        "'ActiveMessages'",
    ),
}


def test_every_module_check_has_a_regression() -> None:
    assert {check for check, _, _ in REGRESSIONS.values()} == set(MODULE_CHECKS)


@pytest.mark.parametrize("regression", REGRESSIONS, ids=str)
def test_each_alert_check_catches_its_regression(regression: str, tmp_path: Path) -> None:
    check, old, new = REGRESSIONS[regression]
    source = ALERTS.read_text()
    assert old in source, f"{regression}: {old!r} is no longer in alerts.bicep; update the regression"
    copy = tmp_path / "alerts.bicep"
    copy.write_text(source.replace(old, new, 1))
    assert not syntax_problems(copy.read_bytes()), "the regression must stay valid Bicep"
    assert check(Template(copy)), f"{check.__name__} did not notice: {regression}"


def test_main_check_notices_alerts_left_out(tmp_path: Path) -> None:
    source = MAIN.read_text()
    copy = tmp_path / "main.bicep"
    copy.write_text(
        source.replace("module alerts 'modules/alerts.bicep' = {", "module alerts 'modules/other.bicep' = {")
    )
    assert check_main_deploys_the_alerts(Template(copy))


def documented_queries() -> list[str]:
    blocks = re.findall(r"```kusto\n(.*?)```", OPERATING.read_text(), re.DOTALL)
    return blocks


def test_the_documented_kql_reads_the_records_the_code_emits() -> None:
    queries = documented_queries()
    assert len(queries) >= 2, "docs/operating.md gives KQL for a user's history and for the passes of a day"
    for query in queries:
        assert kql_problems(query) == [], query


def test_the_kql_check_sees_through_brackets_and_in_lists() -> None:
    assert kql_problems("traces | where customDimensions['run_ids'] == 'x'")
    assert kql_problems("traces | where tostring(customDimensions.outcome) in ('ok', 'fine')")
    assert kql_problems("traces | where tostring(customDimensions.event) != 'provisioning.run'")
    assert kql_problems("traces | take 1")  # reads no record at all
    assert not kql_problems(
        "traces | where tostring(customDimensions['outcome']) in ('ok', 'accounts_failed')"
    )
