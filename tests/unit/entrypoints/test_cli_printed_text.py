"""Text from Graph, Druva, the state or the mappings file is shown, never obeyed: a right-to-left
override (U+202E) makes one name read as another, an escape sequence clears the screen, ``[bold]`` is
rich markup. Every command prints them through one rule (``redaction.printable``): ``\\u202e``, not the
character; JSON stays JSON and parses back to the very text."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest

from tests.builders import account
from tests.integration.test_status_cli import a_pass, write
from tests.unit.entrypoints import test_cli as contract
from tests.unit.entrypoints.test_cli import invoke
from tests.unit.service.test_sync import World

world = contract.world  # the contract tests' fake services
config = contract.config

RLO = "\u202e"
NAME = f"eve{RLO}moc.evil"  # shown raw, "eve" then "live.com" reversed: it would read as another account
UPN = f"{NAME}@contoso.com"


def obeyed(text: str) -> list[str]:
    """Characters a terminal would act on or hide (a newline is the only control the output may hold)."""
    return [
        f"U+{ord(char):04X}"
        for char in text
        if char != "\n" and unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp")
    ]


@pytest.fixture
def eve(world: World) -> World:
    world.directory.add_user(
        account(NAME, display_name=f"Eve \x1b[2J[bold]{RLO}x[/]", officeLocation="Chicago")
    )
    return world


@pytest.mark.parametrize(
    "command",
    [["sync"], ["sync", "--dry-run"], ["import", UPN], ["explain", UPN], ["search", "eve"]],
)
def test_names_from_the_directory_are_shown_not_obeyed(eve: World, config: Path, command: list[str]) -> None:
    code, out, err = invoke(command[0], "--config", str(config), *command[1:])
    assert code in (0, 1), (out, err)
    assert obeyed(out + err) == []
    assert "eve\\u202emoc.evil" in out + err  # the account is still there to see, escaped


def test_search_json_escapes_them_and_parses_back(eve: World, config: Path) -> None:
    code, out, _ = invoke("search", "--config", str(config), "eve", "--json")
    assert code == 0 and obeyed(out) == []
    (found,) = json.loads(out)
    assert found["userPrincipalName"] == UPN and found["displayName"].startswith("Eve \x1b[2J")


def test_a_mapping_name_from_the_mappings_file(world: World, tmp_path: Path) -> None:
    path = tmp_path / "mappings.yaml"
    path.write_text(contract.CONFIG.replace("name: Everyone else", f"name: Every{RLO}one else"))
    for command in (["doctor"], ["explain", "cat@contoso.com"], ["sync", "--dry-run"]):
        code, out, err = invoke(command[0], "--config", str(path), *command[1:])
        assert code in (0, 1), (command, out, err)
        assert obeyed(out + err) == [], command


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("PROVISIONING_TABLE_CONNECTION_STRING", "PROVISIONING_TABLE_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PROVISIONING_STATE", str(tmp_path / "state"))
    return tmp_path / "state"


def test_status_shows_a_failing_account_s_name_escaped(state: Path, config: Path) -> None:
    failing = (f"id-{NAME}",)
    write(state, [a_pass(5, failed=failing), a_pass(20, failed=failing), a_pass(35, failed=failing)])
    code, out, err = invoke("status", "--config", str(config))
    assert code == 1 and "account_failing" in out
    assert obeyed(out + err) == [] and "\\u202e" in out

    code, out, _ = invoke("status", "--config", str(config), "--json")
    assert obeyed(out) == []
    (account_failing,) = json.loads(out)["failing_accounts"]
    assert account_failing["principal"] == f"id-{NAME}@contoso.com"  # the JSON holds the very text
