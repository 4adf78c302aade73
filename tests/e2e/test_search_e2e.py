"""``search`` end to end: the real command line, adapters and SQLite state against the simulators.
What an admin sees, what the JSON holds, the exit codes, and that the import command it prints works."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulators.local import LocalCloud, local_cloud
from simulators.tenants import make_user, seed_use_case
from tests.e2e.test_sync_e2e import Admin

ALICE_LINE = (
    "alice@contoso.com (Alice) — user, enabled — mapping US Finance: profile Finance, storage US-East, "
    "quota 200 GB — Druva: not there — import would create it"
)


@pytest.fixture
def admin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Admin]:
    cloud: LocalCloud
    with local_cloud(seed_use_case()) as cloud:
        yield Admin(cloud, tmp_path, monkeypatch)


def test_search_shows_the_mapping_and_ends_with_the_import_command_that_works(admin: Admin) -> None:
    code, out, err = admin.run("search", "ali")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0] == ALICE_LINE
    assert (
        lines[-1]
        == f"python -m provisioning import --config {shlex.quote(str(admin.config))} alice@contoso.com"
    )
    assert admin.cloud.druva.writes() == 0  # a search writes nothing

    command = shlex.split(lines[-1])
    assert command[:3] == ["python", "-m", "provisioning"]
    code, out, err = admin.run(command[3], *command[6:])  # the same arguments, in-process
    assert code == 0, err
    assert admin.druva()["alice@contoso.com"] == ("Finance", "US-East", "active")

    code, out, _ = admin.run("search", "ali")
    assert "Druva: active" in out and "already active in Druva: nothing to import" in out
    assert "none of them can be imported" in out


def test_kinds_states_and_reasons(admin: Admin) -> None:
    code, out, _ = admin.run("search", "g", "--limit", "10")  # grace, gus, gina
    assert code == 0
    gus = next(line for line in out.splitlines() if line.startswith("gus_"))
    assert "— guest, enabled — no mapping: user type is Guest; only Member accounts are provisioned" in gus
    grace = next(line for line in out.splitlines() if line.startswith("grace@"))
    assert "mapping Everyone else" in grace
    assert out.strip().splitlines()[-1].endswith(" grace@contoso.com")  # guests are not in the command

    _, out, _ = admin.run("search", "dan")
    assert "— user, disabled — no mapping: disabled in Entra" in out
    _, out, _ = admin.run("search", "Finance Shared")
    assert "— shared mailbox, disabled — mapping Shared mailboxes" in out


def test_json_is_one_array_of_the_same_facts(admin: Admin) -> None:
    code, out, err = admin.run("search", "--json", "a")
    assert code == 0
    found = json.loads(out)
    assert isinstance(found, list) and [f["userPrincipalName"] for f in found] == ["alice@contoso.com"]
    alice = found[0]
    assert alice["kind"] == "user" and alice["enabled"] is True and alice["importable"] is True
    assert alice["mapping"] == "US Finance" and alice["decision"] == "created"
    assert alice["target"] == {"profile": "Finance", "storage": "US-East", "quota": "200 GB"}
    assert alice["druva"] is None and alice["reason"] is None
    assert "python -m provisioning import --config" in err  # the command goes to stderr with --json


def test_names_with_odata_specials_are_found_exactly(admin: Admin) -> None:
    admin.cloud.graph.add_user(make_user("sean.obrien", display_name="Seán O'Brien"))
    admin.cloud.graph.add_user(make_user("rnd", display_name="R&D #1 100%"))
    code, out, _ = admin.run("search", "--json", "Seán O'")
    assert code == 0 and [f["userPrincipalName"] for f in json.loads(out)] == ["sean.obrien@contoso.com"]
    code, out, _ = admin.run("search", "--json", "R&D #1 1")
    assert code == 0 and [f["userPrincipalName"] for f in json.loads(out)] == ["rnd@contoso.com"]


@pytest.mark.parametrize("text", ["zzz", "' or 1 eq 1 or '", "') or (1 eq 1", "[/]", "[bold]x"])
def test_nothing_found_exits_1(admin: Admin, text: str) -> None:
    code, _, err = admin.run("search", text)
    assert code == 1 and "no Entra account" in err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("",), "empty"),
        (("  ",), "empty"),
        (("x" * 257,), "at most 256"),
        (("ali\n",), "control character"),
        (("a\x1b[2J",), "control character"),
        (("ali", "--limit", "0"), "--limit"),
        (("ali", "--limit", "1000"), "--limit"),
    ],
)
def test_bad_input_exits_2_before_any_request(admin: Admin, arguments: tuple[str, ...], message: str) -> None:
    admin.cloud.reset_counts()
    code, _, err = admin.run("search", *arguments)
    assert code == 2 and message in err
    assert admin.cloud.graph.graph_requests() == 0


def test_a_graph_failure_exits_1(admin: Admin) -> None:
    admin.cloud.graph.inject(403, count=1, routes=["users"])
    code, _, err = admin.run("search", "ali")
    assert code == 1 and "error" in err


def test_a_search_costs_a_few_graph_requests_whatever_it_finds(admin: Admin) -> None:
    admin.cloud.reset_counts()
    code, _, _ = admin.run("search", "--limit", "25", "--json", "f")  # frank, finance-shared
    assert code == 0
    counts = admin.cloud.graph.counts
    # the mappings' groups (one batch), the search, the groups of the members (one batch), the
    # mailbox purpose of the disabled one (one batch)
    assert counts["users"] == 1 and counts["batch"] == 3 and admin.cloud.graph.graph_requests() == 4
