"""The CLI's public contract: command surface, exit codes and the --json line, with fakes behind it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from provisioning.entrypoints.cli import app
from provisioning.service.context import Services
from tests.unit.service.test_sync import World

CONFIG = """\
mappings:
  - name: US Finance
    match: {groups: ["US Finance"]}
    target: {profile: Finance, storage: US-East, quota: 200 GB}
  - name: US offices
    match: {attribute: officeLocation, values: ["New York", "Chicago"]}
    target: {profile: Standard, storage: US-East}
  - name: Shared mailboxes
    match: {all: true, kinds: [shared_mailbox]}
    target: {profile: Mailboxes, storage: US-East}
  - name: Everyone else
    match: {all: true}
    target: {profile: Standard, storage: EU-West, quota: unlimited}
safety: {max_preserve_fraction: 0.2}
"""


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    world = World()

    @asynccontextmanager
    async def fake_services(settings: object, *, dry_run: bool = False) -> AsyncIterator[Services]:
        yield Services(world.directory, world.druva, world.state, world.clock)

    monkeypatch.setattr("provisioning.bootstrap.open_services", fake_services)
    return world


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "mappings.yaml"
    path.write_text(CONFIG)
    return path


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_sync_json_ends_with_the_counts(world: World, config: Path) -> None:
    code, out, _ = invoke("sync", "--config", str(config), "--json")
    assert code == 0
    counts = json.loads(out.strip().splitlines()[-1])
    assert counts == {
        "created": 6,
        "updated": 0,
        "preserved": 0,
        "reactivated": 0,
        "unchanged": 0,
        "skipped": 2,
        "failed": 0,
    }
    assert all(isinstance(v, int) for v in counts.values())


def test_dry_run_prints_the_plan_and_writes_nothing(world: World, config: Path) -> None:
    code, out, _ = invoke("sync", "--config", str(config), "--dry-run")
    assert code == 0
    assert "fay@contoso.com: created: create fay@contoso.com (profile Finance" in out
    assert world.druva.writes == [] and world.state.writes == 0


def test_partial_failure_exits_1(world: World, config: Path) -> None:
    from provisioning.errors import InvalidRequestError

    world.druva.fail_creates["ben@contoso.com"] = InvalidRequestError("Druva refused: KMS not enabled", "X-1")
    code, out, err = invoke("sync", "--config", str(config), "--json")
    assert code == 1
    assert json.loads(out.strip().splitlines()[-1])["failed"] == 1
    assert "ben@contoso.com" in err and "KMS or BYOK" in err


def test_safety_stop_exits_3(world: World, config: Path) -> None:
    invoke("sync", "--config", str(config))
    for name in ("ann", "ben", "cat"):
        world.directory.delete_user(f"id-{name}")
    code, out, err = invoke("sync", "--config", str(config), "--json")
    assert code == 3
    assert json.loads(out.strip().splitlines()[-1])["preserved"] == 0
    assert out.count("\n") == 1  # with --json, stdout is the JSON line alone
    assert "safety stop: this run would preserve 3 of 6 managed users" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sync", "--config", "/nonexistent.yaml"], "cannot read the configuration"),
        (["sync"], "--config"),
        (["sync", "--config", "CONFIG", "--bogus"], "No such option"),
        (["import", "--config", "CONFIG"], "Missing argument"),
    ],
)
def test_bad_arguments_exit_2(world: World, config: Path, args: list[str], message: str) -> None:
    code, out, err = invoke(*[str(config) if a == "CONFIG" else a for a in args])
    assert code == 2
    assert message in out + err


def test_unknown_group_is_a_config_error(world: World, tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(CONFIG.replace('"US Finance"', '"US Finanse"'))
    code, _, err = invoke("sync", "--config", str(path))
    assert code == 2
    assert "US Finanse" in err


def test_unknown_profile_lists_close_matches(world: World, tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(CONFIG.replace("profile: Finance", "profile: Finanse"))
    code, _, err = invoke("sync", "--config", str(path))
    assert code == 2
    assert "Druva has no profile named 'Finanse'; close matches: Finance" in err


def test_import_refuses_guests_and_unknown_accounts(world: World, config: Path) -> None:
    code, out, err = invoke(
        "import", "--config", str(config), "ann@contoso.com", "guest@contoso.com", "who@x.com"
    )
    assert code == 1
    assert "ann@contoso.com: created" in out
    assert "guest@contoso.com: not imported: user type is Guest" in err
    assert "who@x.com: not imported: no Entra account has this user principal name or id" in err


def test_explain(world: World, config: Path) -> None:
    invoke("sync", "--config", str(config))
    code, out, _ = invoke("explain", "--config", str(config), "fay@contoso.com")
    assert code == 0
    assert "#1 US Finance: direct member of US Finance" in out
    assert "#2 US offices also matches, at lower priority" in out
    assert "history" in out and "create" in out
    code, _, err = invoke("explain", "--config", str(config), "nobody@contoso.com")
    assert code == 1 and "no Entra account" in err


def test_doctor_states_the_key_management_requirement(world: World, config: Path) -> None:
    code, out, _ = invoke("doctor", "--config", str(config))
    assert code == 0
    assert "KMS or BYOK" in out
    assert "US Finance" in out
