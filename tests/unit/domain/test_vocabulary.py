"""The words the product records and reports are typed, and recorded history keeps its meaning."""

from __future__ import annotations

from provisioning.domain.decisions import Activate, Adopt, Create, Outcome, Patch, Preserve
from provisioning.domain.state import AuditOutcome, RunKind
from provisioning.service.report import COUNT_KEYS, ExitCode


def test_each_action_keeps_the_name_the_audit_trail_has_always_stored() -> None:
    # Rows written before actions had names hold the lower-cased class name: the same words.
    for action in (Create, Adopt, Patch, Preserve, Activate):
        assert action.name == action.__name__.lower()


def test_count_keys_are_the_outcomes_then_failed_in_the_order_the_cli_shows() -> None:
    assert COUNT_KEYS == ("created", "updated", "preserved", "reactivated", "unchanged", "skipped", "failed")
    assert COUNT_KEYS[:-1] == tuple(Outcome)


def test_stored_words_read_back_as_the_enums() -> None:
    assert [RunKind(word) for word in ("delta", "full", "import", "notification")] == list(RunKind)
    assert [AuditOutcome(word) for word in ("done", "failed", "planned", "skipped")] == list(AuditOutcome)


def test_exit_codes_are_the_documented_numbers() -> None:
    assert [int(code) for code in ExitCode] == [0, 1, 2, 3]
    assert [code.name for code in ExitCode] == ["OK", "FAILED", "BAD_INPUT", "SAFETY_STOP"]
