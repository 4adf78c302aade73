"""End to end: the real command line, the real adapters, the SQLite state, and the Graph and Druva
simulators on loopback. Every rule of the mappings contract, in both directions, and the faults."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from provisioning.entrypoints.cli import app
from simulators.local import LocalCloud, local_cloud
from simulators.outages import Outage, OutageKind
from simulators.tenants import make_user, seed_use_case

SEED_CONFIG = (Path(__file__).parents[2] / "examples" / "mappings.yaml").read_text()
FIRST_IMPORT = {
    "alice@contoso.com": ("Finance", "US-East", "active"),
    "bob@contoso.com": ("Finance", "US-East", "active"),
    "carol@contoso.com": ("Standard", "US-East", "active"),
    "heidi@contoso.com": ("Standard", "US-East", "active"),
    "ivan@contoso.com": ("Standard", "US-East", "active"),  # nested member only: not US Finance
    "olivia@contoso.com": ("Standard", "US-East", "active"),  # owns US Finance, is not a member
    "erin@contoso.com": ("Standard", "EU-West", "active"),
    "frank@contoso.com": ("Standard", "EU-West", "active"),
    "grace@contoso.com": ("Standard", "EU-West", "active"),
    "finance-shared@contoso.com": ("Mailboxes", "US-East", "active"),
}


class Admin:
    """Runs ``python -m provisioning`` in-process with the settings pointing at the local cloud."""

    def __init__(self, cloud: LocalCloud, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.cloud, self.folder = cloud, folder
        for name, value in cloud.environment(folder / "state").items():
            monkeypatch.setenv(name, value)
        self.configure(SEED_CONFIG)

    def configure(self, text: str) -> None:
        self.config = self.folder / "mappings.yaml"
        self.config.write_text(text)

    def run(self, *arguments: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(app, [arguments[0], "--config", str(self.config), *arguments[1:]])
        return result.exit_code, result.stdout, result.stderr

    def sync(self, *flags: str, expect: int = 0) -> dict[str, int]:
        code, out, err = self.run("sync", "--json", *flags)
        assert code == expect, f"exit {code}\n{out}\n{err}"
        counts: dict[str, int] = json.loads(out.strip().splitlines()[-1])
        return counts

    def druva(self) -> dict[str, tuple[str, str, str]]:
        """Druva's users as (profile, storage, status) by e-mail."""
        state = self.cloud.druva.state()
        profiles = {p["profileID"]: p["profileName"] for p in state["profiles"]}
        storages = {s["StorageID"]: s["storageName"] for s in state["storages"]}
        return {
            u["emailID"].lower(): (profiles[u["profileID"]], storages[u["storageID"]], u["status"])
            for u in state["users"]
        }


@pytest.fixture
def cloud() -> Iterator[LocalCloud]:
    with local_cloud(seed_use_case()) as running:
        yield running


@pytest.fixture
def admin(cloud: LocalCloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Admin:
    return Admin(cloud, tmp_path, monkeypatch)


def counts(**nonzero: int) -> dict[str, int]:
    keys = ("created", "updated", "preserved", "reactivated", "unchanged", "skipped", "failed")
    return {key: nonzero.get(key, 0) for key in keys}


def test_first_import_follows_priority_kinds_members_and_guests(admin: Admin) -> None:
    assert admin.sync() == counts(created=10, skipped=3)  # dan (disabled), gus and gina (guests)
    assert admin.druva() == FIRST_IMPORT
    alice = admin.cloud.druva.user_by_email("alice@contoso.com")
    assert alice is not None and alice["quotaInBytes"] == 200 * 1024**3
    assert alice["passwordMailed"] is False


def test_rerun_makes_zero_druva_writes(admin: Admin) -> None:
    admin.sync()
    admin.cloud.reset_counts()
    assert admin.sync() == counts()
    assert admin.sync("--full") == counts(unchanged=10, skipped=3)
    assert admin.cloud.druva.writes() == 0


def test_dry_run_writes_nothing_to_druva_or_state(admin: Admin) -> None:
    code, out, _ = admin.run("sync", "--dry-run")
    assert code == 0
    assert "alice@contoso.com: created: create alice@contoso.com (profile Finance" in out
    assert admin.cloud.druva.writes() == 0
    assert not (admin.folder / "state").exists()
    admin.sync()
    admin.cloud.graph.update_user("carol@contoso.com", officeLocation="Paris")
    state_file = admin.folder / "state" / "state.sqlite3"
    before = state_file.read_bytes()
    assert admin.sync("--dry-run") == counts(updated=1)
    assert admin.cloud.druva.writes() == 10
    assert state_file.read_bytes() == before
    assert admin.sync() == counts(updated=1)  # the dry run left the change for the real run


def test_new_hire_leaver_mover_and_return(admin: Admin) -> None:
    admin.sync()
    graph, finance = admin.cloud.graph, seed_use_case().group_id("US Finance")
    graph.add_member(finance, graph.add_user(make_user("nina", office="Boston")))
    graph.update_user("erin@contoso.com", accountEnabled=False)
    graph.update_user("carol@contoso.com", officeLocation="Paris")
    assert admin.sync() == counts(created=1, updated=1, preserved=1)
    druva = admin.druva()
    assert druva["nina@contoso.com"] == ("Finance", "US-East", "active")
    assert druva["erin@contoso.com"] == ("Standard", "EU-West", "preserved")
    assert druva["carol@contoso.com"] == ("Standard", "EU-West", "active")

    graph.update_user("erin@contoso.com", accountEnabled=True)
    assert admin.sync() == counts(reactivated=1)
    assert admin.druva()["erin@contoso.com"][2] == "active"


def test_soft_deleted_user_is_preserved_and_reactivated_when_restored(admin: Admin) -> None:
    admin.sync()
    frank = seed_use_case().user_id("frank")
    admin.cloud.graph.delete_user("frank@contoso.com")
    assert admin.sync() == counts(preserved=1)
    assert admin.druva()["frank@contoso.com"][2] == "preserved"
    admin.cloud.graph.restore_user(frank)
    assert admin.sync() == counts(reactivated=1)


def test_group_member_leaving_the_group_is_remapped(admin: Admin) -> None:
    admin.sync()
    admin.cloud.graph.remove_member(seed_use_case().group_id("US Finance"), "bob@contoso.com")
    assert admin.sync() == counts(updated=1)
    assert admin.druva()["bob@contoso.com"] == ("Standard", "US-East", "active")


NO_CATCH_ALL = SEED_CONFIG.replace(
    """  - name: Everyone else
    match: {all: true}                   # kinds defaults to [user]
    target: {profile: Standard, storage: EU-West, quota: unlimited}
""",
    "",
)


@pytest.mark.parametrize("rule", ["preserve", "ignore"])
def test_lifecycle_rules_both_ways(admin: Admin, rule: str) -> None:
    text = (
        NO_CATCH_ALL.replace("disabled: preserve", f"disabled: {rule}")
        .replace("deleted: preserve", f"deleted: {rule}")
        .replace("unmapped: preserve", f"unmapped: {rule}")
    )
    admin.configure(text.replace("max_preserve_fraction: 0.1", "max_preserve_fraction: 0.5"))
    assert admin.sync() == counts(created=7, skipped=6)  # erin, frank, grace: unmapped, never created
    graph = admin.cloud.graph
    graph.update_user("alice@contoso.com", accountEnabled=False)  # disabled
    graph.delete_user("heidi@contoso.com")  # deleted
    graph.update_user("carol@contoso.com", officeLocation="Paris")  # unmapped
    expected = "preserved" if rule == "preserve" else "active"
    assert admin.sync() == (counts(preserved=3) if rule == "preserve" else counts(unchanged=3))
    druva = admin.druva()
    assert [druva[f"{n}@contoso.com"][2] for n in ("alice", "heidi", "carol")] == [expected] * 3
    assert "erin@contoso.com" not in druva


@pytest.mark.parametrize(("remap", "profile"), [("update", "Finance"), ("ignore", "Standard")])
def test_remap_both_ways(admin: Admin, remap: str, profile: str) -> None:
    admin.configure(SEED_CONFIG.replace("remap: update", f"remap: {remap}"))
    admin.sync()
    admin.cloud.graph.add_member(seed_use_case().group_id("US Finance"), "carol@contoso.com")
    admin.sync()
    assert admin.druva()["carol@contoso.com"][0] == profile
    _, out, _ = admin.run("explain", "carol@contoso.com")
    assert "#1 US Finance: direct member of US Finance" in out
    assert ("lifecycle.remap is ignore" in out) is (remap == "ignore")


def test_an_edited_mappings_file_is_applied_to_everyone(admin: Admin) -> None:
    admin.sync()
    admin.configure(
        SEED_CONFIG.replace("storage: EU-West, quota: unlimited", "storage: US-East, quota: unlimited")
    )
    code, out, err = admin.run("sync", "--json")
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1]) == counts(updated=3, unchanged=7, skipped=3)
    assert "the mappings changed" in err
    assert {admin.druva()[f"{n}@contoso.com"][1] for n in ("erin", "frank", "grace")} == {"US-East"}


def test_shared_mailbox_is_never_preserved_for_being_disabled(admin: Admin) -> None:
    admin.sync()
    admin.cloud.graph.update_user("finance-shared@contoso.com", displayName="Finance Team Mailbox")
    assert admin.sync() == counts(updated=1)  # a rename, not a preserve: it was always disabled
    assert admin.druva()["finance-shared@contoso.com"] == ("Mailboxes", "US-East", "active")


def test_nested_groups_and_case_insensitive_values(admin: Admin) -> None:
    admin.configure(
        SEED_CONFIG.replace(
            'match: {groups: ["US Finance"]}', 'match: {groups: ["US Finance"], nested: true}'
        ).replace('values: ["New York", "Chicago"]}', 'values: ["new york", "chicago"], ignore_case: true}')
    )
    admin.sync()
    druva = admin.druva()
    assert druva["ivan@contoso.com"][0] == "Finance"  # through US Finance Auditors
    assert druva["carol@contoso.com"][1] == "US-East"  # "Chicago" matched "chicago"


def test_e_mail_from_the_mail_attribute(admin: Admin) -> None:
    admin.configure(SEED_CONFIG.replace("user_id_attribute: userPrincipalName", "user_id_attribute: mail"))
    admin.cloud.graph.update_user("alice@contoso.com", mail="alice.smith@contoso.com")
    admin.sync()
    assert "alice.smith@contoso.com" in admin.druva()


def test_existing_druva_user_is_adopted_whatever_the_case(admin: Admin) -> None:
    admin.cloud.druva.add_user("ALICE@Contoso.com", profile="Standard", storage="EU-West", name="Alice")
    assert admin.sync() == counts(created=9, updated=1, skipped=3)
    users = [u for u in admin.cloud.druva.users() if u["emailID"].lower() == "alice@contoso.com"]
    assert len(users) == 1
    assert admin.druva()["alice@contoso.com"] == ("Finance", "US-East", "active")


def test_adoption_can_be_refused(admin: Admin) -> None:
    admin.configure("adopt_existing: false\n" + SEED_CONFIG)
    admin.cloud.druva.add_user("alice@contoso.com", profile="Standard", storage="EU-West")
    assert admin.sync() == counts(created=9, skipped=4)
    assert admin.druva()["alice@contoso.com"] == ("Standard", "EU-West", "active")


def test_mass_preserve_guard_exits_3_and_preserves_nobody(admin: Admin) -> None:
    admin.sync()
    for name in ("alice", "bob", "carol"):
        admin.cloud.graph.update_user(f"{name}@contoso.com", accountEnabled=False)
    code, out, err = admin.run("sync", "--json")
    assert code == 3
    assert json.loads(out.strip().splitlines()[-1])["preserved"] == 0
    assert "safety stop: this run would preserve 3 of 10 managed users" in err
    assert all(status == "active" for _, _, status in admin.druva().values())
    admin.configure(SEED_CONFIG.replace("max_preserve_fraction: 0.1", "max_preserve_fraction: 0.3"))
    assert admin.sync() == counts(preserved=3)  # the same changes, once the admin agrees


def test_cursor_expiry_means_a_full_read_without_mass_preserve(admin: Admin) -> None:
    admin.sync()
    admin.cloud.graph.expire_cursors()
    admin.cloud.graph.update_user("carol@contoso.com", officeLocation="Paris")
    code, out, err = admin.run("sync", "--json")
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1]) == counts(updated=1, unchanged=9, skipped=3)
    assert "cursor expired" in err


def final_state_without_faults() -> dict[str, tuple[str, str, str]]:
    return {**FIRST_IMPORT}


def test_graph_throttling_and_outages_end_in_the_same_state(admin: Admin) -> None:
    admin.cloud.graph.inject(429, count=2, retry_after=1)
    admin.cloud.graph.inject(503, count=1)
    assert admin.sync() == counts(created=10, skipped=3)
    assert admin.druva() == final_state_without_faults()


def test_druva_faults_end_in_the_same_state_without_duplicates(admin: Admin) -> None:
    admin.cloud.druva.set_faults(
        throttle_rate=0.15, error_rate=0.1, lost_response_rate=0.3, retry_after_seconds=0
    )
    for _ in range(3):  # a pass that ran out of retries leaves the rest to the next pass
        code, _, _ = admin.run("sync", "--json")
        if code == 0:
            break
    assert code == 0
    assert admin.cloud.druva.api_requests() > 14  # a clean first import takes 14: the faults did happen
    admin.cloud.druva.clear_faults()
    assert admin.druva() == final_state_without_faults()
    emails = [u["emailID"].lower() for u in admin.cloud.druva.users()]
    assert len(emails) == len(set(emails)) == 10
    assert admin.sync("--full") == counts(unchanged=10, skipped=3)


def test_druva_token_expiring_mid_run(admin: Admin) -> None:
    druva = admin.cloud.druva
    druva.apply_outage(Outage(OutageKind.SLOW, seconds=0.05))
    done = threading.Event()

    def expire_after_the_first_writes() -> None:
        # Mid-run is counted in Druva requests, not wall time: a busy machine starts the run late.
        while not done.wait(0.01):
            if druva.writes() >= 3:
                druva.expire_tokens()
                return

    expiry = threading.Thread(target=expire_after_the_first_writes, daemon=True)
    expiry.start()
    try:
        assert admin.sync() == counts(created=10, skipped=3)
    finally:
        done.set()
        expiry.join(timeout=5)
    assert druva.counts["token"] >= 2  # the expired token was replaced, once
    assert admin.druva() == final_state_without_faults()


def test_import_and_explain(admin: Admin) -> None:
    code, out, err = admin.run(
        "import", "alice@contoso.com", "gus_fabrikam.com#EXT#@contoso.com", "no@contoso.com"
    )
    assert code == 1
    assert "alice@contoso.com: created" in out
    assert "not imported: user type is Guest" in err
    assert "no Entra account" in err
    assert list(admin.druva()) == ["alice@contoso.com"]
    code, out, _ = admin.run("explain", "alice@contoso.com")
    assert code == 0
    assert "#1 US Finance: direct member of US Finance" in out and "create" in out


def test_doctor_names_unknown_groups_profiles_and_storages(admin: Admin) -> None:
    admin.configure(
        SEED_CONFIG.replace('"US Finance"', '"US Finanse"').replace("profile: Finance", "profile: Finanse")
    )
    code, out, _ = admin.run("doctor")
    assert code == 1
    assert "US Finanse" in out and "close matches: US Finance" in out
    assert "Finanse" in out and "KMS or BYOK" in out
    code, _, err = admin.run("sync")
    assert code == 2 and "US Finanse" in err
