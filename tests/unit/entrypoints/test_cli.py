"""The CLI's public contract: command surface, exit codes and the --json line, with fakes behind it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from provisioning import bootstrap
from provisioning.entrypoints.cli import app
from provisioning.ports import StateStore
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
def world() -> Iterator[World]:
    world = World()

    @asynccontextmanager
    async def fake_services(settings: object, *, dry_run: bool = False) -> AsyncIterator[Services]:
        yield Services(world.directory, world.druva, world.state, world.clock)

    async def fake_state(settings: object, **kwargs: object) -> StateStore:
        return _Unclosed(world.state)  # type: ignore[return-value]

    bootstrap.install(services=fake_services, state=fake_state)
    yield world
    bootstrap.install()


class _Unclosed:
    """The world's state for a command that opens the state alone, kept open for the next command."""

    def __init__(self, state: object) -> None:
        self._state = state

    def __getattr__(self, name: str) -> object:
        return getattr(self._state, name)

    async def aclose(self) -> None:
        return None


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
    from provisioning.errors import DruvaRefused, RefusalKind

    refused = DruvaRefused(
        "Druva refused: KMS not enabled", RefusalKind.KEY_MANAGEMENT
    )  # as the adapter types it
    world.druva.fail_creates["ben@contoso.com"] = refused
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


def test_a_state_bound_to_another_druva_is_refused_with_exit_2(world: World, config: Path) -> None:
    assert invoke("sync", "--config", str(config))[0] == 0
    world.druva.credential = "fake-druva/another-client"
    writes = len(world.druva.writes)
    code, out, err = invoke("sync", "--config", str(config), "--full", "--json")
    assert code == 2 and len(world.druva.writes) == writes
    assert "python -m provisioning rebind" in err
    line = json.loads(out.strip().splitlines()[-1])
    assert line["created"] == 0 and "built against" in line["error"]


def test_rebind_checks_the_links_then_binds(world: World, config: Path) -> None:
    invoke("sync", "--config", str(config))
    world.druva.credential = "fake-druva/another-client"
    code, out, _ = invoke("rebind", "--config", str(config))
    assert code == 0 and "of 6 linked Druva users sampled, 6 have the e-mail recorded" in out
    assert invoke("sync", "--config", str(config))[0] == 0


def test_mode_with_no_state_switches_nothing(
    world: World, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An emergency `mode plan` that made a new local state would miss the deployed app: refused."""
    monkeypatch.setenv("PROVISIONING_STATE", str(config.parent / "nowhere"))
    code, _, err = invoke("mode", "--config", str(config), "plan")
    assert code == 2 and "no state at state file" in err and "PROVISIONING_TABLE_ENDPOINT" in err
    assert not (config.parent / "nowhere").exists()


def test_mode_shows_switches_and_refuses_apply_without_a_count(
    world: World, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROVISIONING_INITIAL_MODE", "plan")
    monkeypatch.setenv("PROVISIONING_STATE", str(config.parent))
    (config.parent / "state.sqlite3").touch()  # the state the fake stands for exists
    code, out, _ = invoke("sync", "--config", str(config), "--json")
    assert code == 0 and world.druva.writes == []
    code, out, _ = invoke("mode", "--config", str(config))
    assert (
        code == 0
        and out.startswith("mode: plan")
        and "to go live: python -m provisioning mode apply --confirm-creates 6" in out
    )
    code, _, err = invoke("mode", "--config", str(config), "apply")
    assert code == 2 and "--confirm-creates" in err
    assert invoke("mode", "--config", str(config), "sideways")[0] == 2
    code, out, _ = invoke("mode", "--config", str(config), "apply", "--confirm-creates", "6", "--json")
    assert code == 0 and json.loads(out)["first_apply_pending"] is True
    code, out, _ = invoke("sync", "--config", str(config), "--json")
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["created"] == 6
    code, out, _ = invoke("mode", "--config", str(config), "plan")
    assert code == 0 and out.startswith("mode: plan")


def test_a_pass_that_dies_part_way_reports_what_it_did_before(world: World, config: Path) -> None:
    from provisioning.errors import LeaseLost

    real = world.state.put_link
    done = 0

    async def put_link_then_lose_the_lease(link: object) -> object:
        nonlocal done
        done += 1
        if done > 3:
            raise LeaseLost("this pass's own lease on the cursors ran out (the clock jumped)")
        return await real(link)  # type: ignore[arg-type]

    world.state.put_link = put_link_then_lose_the_lease  # type: ignore[method-assign,assignment]
    code, out, err = invoke("sync", "--config", str(config), "--json")
    line = json.loads(out.strip().splitlines()[-1])
    assert code == 1 and "another sync" not in err
    made = len([w for w in world.druva.writes if w[0] == "create"])
    assert "own lease" in line["error"] and line["created"] == made, line  # made in Druva, if not all linked


@pytest.mark.parametrize(
    "command", [["sync", "--full"], ["sync", "--dry-run", "--full"], ["explain", "ann@contoso.com"]]
)
def test_a_record_the_state_cannot_decode_is_bad_input_naming_the_state(
    world: World, config: Path, command: list[str]
) -> None:
    invoke("sync", "--config", str(config))
    world.state._db.execute("UPDATE links SET status = 'sideways'")
    code, out, err = invoke(command[0], "--config", str(config), *command[1:])
    assert code == 2, (out, err)
    assert "state file" in err and "a record cannot be read (ValueError" in err
    assert "unexpected" not in err


def test_a_disk_that_fills_part_way_is_named_with_the_counts_done_before(world: World, config: Path) -> None:
    from provisioning.errors import TransientError

    real = world.state.put_link
    done = 0

    async def put_link_until_the_disk_fills(link: object) -> object:
        nonlocal done
        done += 1
        if done > 4:
            raise TransientError(
                "the disk holding the state file /srv/state.sqlite3 is full (database or disk is full)"
            )
        return await real(link)  # type: ignore[arg-type]

    world.state.put_link = put_link_until_the_disk_fills  # type: ignore[method-assign,assignment]
    code, out, err = invoke("sync", "--config", str(config), "--json")
    line = json.loads(out.strip().splitlines()[-1])
    assert code == 1 and "/srv/state.sqlite3 is full" in line["error"]
    made = len([w for w in world.druva.writes if w[0] == "create"])
    assert line["created"] == made and "a full disk" in err, line  # made in Druva, if not all linked


def test_a_full_pass_that_fails_while_reading_counts_nothing_it_did_not_write(
    world: World, config: Path
) -> None:
    from provisioning.errors import TransientError

    pages = 0
    real = world.directory.read_users

    async def third_page_fails(*args: object, **kwargs: object) -> Any:
        nonlocal pages
        async for page in real(*args, **kwargs):  # type: ignore[arg-type]
            pages += 1
            if pages == 3:
                raise TransientError("Graph answered 503")
            yield page

    world.directory.read_users = third_page_fails  # type: ignore[method-assign]
    code, out, _ = invoke("sync", "--config", str(config), "--full", "--json")
    line = json.loads(out.strip().splitlines()[-1])
    assert code == 1 and world.druva.writes == [] and line["created"] == 0, line


@pytest.mark.parametrize(
    "args",
    [
        ["apply", "--confirm-creates", "50000001"],
        ["plan", "--confirm-creates", "3"],
        ["--confirm-creates", "3"],
    ],
)
def test_mode_refuses_a_count_that_would_switch_the_limit_off_or_means_nothing(
    world: World, config: Path, args: list[str]
) -> None:
    code, _, err = invoke("mode", "--config", str(config), *args)
    assert code == 2, err
