"""The operator's command line: ``python -m provisioning sync|import|explain|search|doctor|status``.

Exit codes are a contract: 0 success; 1 some accounts failed (the rest done) or a service failed
(``status``: unhealthy, or no state yet); 2 bad configuration or arguments; 3 safety stop (nothing
preserved).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from provisioning import redaction
from provisioning.bootstrap import command_line_identity
from provisioning.config import ConfigError, ProvisioningConfig, load_config
from provisioning.errors import (
    AuthError,
    CursorBusy,
    LeaseLost,
    NeedsHuman,
    NoState,
    PagingStopped,
    ProvisioningError,
    StateFileBusy,
    TransientError,
    UnreadableRecord,
    unreadable_record,
)
from provisioning.redaction import printable, printable_json, scrub
from provisioning.redaction import printable_markup as shown
from provisioning.service.context import ProgressCallback, Run, Services
from provisioning.service.report import COUNT_KEYS, ExitCode, RunReport, partial_report
from provisioning.service.status import Status
from provisioning.service.telemetry import LOGGER as TELEMETRY_LOGGER
from provisioning.settings import Settings, log_level, state_folder_problem

OK, FAILED, BAD_INPUT, SAFETY_STOP = ExitCode
log = logging.getLogger(__name__)

app = typer.Typer(
    name="provisioning",
    help="Provision Microsoft Entra ID users into Druva inSync through ordered mappings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config", envvar="PROVISIONING_CONFIG", help="The mappings file (YAML).", show_default=False
    ),
]


VerboseOption = Annotated[
    bool,
    typer.Option("--verbose", "-v", help="Debug logging (else PROVISIONING_LOG_LEVEL; default WARNING)."),
]


class Output:
    """Human output to stdout, or to stderr when stdout is reserved for the JSON line."""

    def __init__(self, json_mode: bool = False) -> None:
        self.json_mode = json_mode
        self.console = Console(stderr=json_mode, highlight=False, soft_wrap=True)
        self.errors = Console(stderr=True, highlight=False, soft_wrap=True)

    def problem(self, text: str) -> None:
        self.errors.print(f"[bold red]error:[/] {shown(text)}", markup=True, highlight=False)


def _main(job: Callable[[Output], Coroutine[Any, Any, int]], output: Output, verbose: bool = False) -> None:
    """Run one command: settings checked before any work, every failure one scrubbed line and its exit
    code, never a traceback (``--verbose`` logs one for the unexpected)."""
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    redaction.install(redaction.Redactor.from_environment())
    problems: list[str] = []
    failure: BaseException | None = None
    # The telemetry records are for Application Insights; the command line prints the same facts itself.
    logging.getLogger(TELEMETRY_LOGGER).setLevel(logging.ERROR)
    code: int
    try:
        settings = Settings()
        logging.getLogger().setLevel(logging.DEBUG if verbose else log_level(settings))
        with command_line_identity():  # an admin's laptop has no managed identity: their az login
            code = asyncio.run(job(output))
    except Exception as error:
        failure = error
        problems, code = _problems_of(error)
    for line in problems:
        output.problem(line)
    if problems and output.json_mode:  # the contract's last stdout line, even when the run never started
        print(json.dumps({**_counts_before(failure), "error": scrub(problems[0])}), flush=True)
    raise typer.Exit(code)


Explained = Callable[[Any], list[str]]
# How each failure that ends a command is told, and its exit code: the first row whose type matches.
# 2 means the admin must fix something (the input, a setting, the state); 1 that it failed for now, or
# that a service refused. Every "stop" error is a NeedsHuman; what no row names is a bug: one line.
FAILURES: tuple[tuple[type[BaseException], int, Explained], ...] = (
    (ConfigError, BAD_INPUT, lambda e: list(e.problems)),
    (ValidationError, BAD_INPUT, lambda e: _setting_problems(e)),  # noqa: PLW0108 (defined below)
    (UnreadableRecord, BAD_INPUT, lambda e: [str(unreadable_record(_state_named(), e.cause))]),
    (NoState, FAILED, lambda e: [f"no state yet: {e}"]),
    (NeedsHuman, BAD_INPUT, lambda e: [str(e)]),  # a state file that cannot be used, a bad search...
    (StateFileBusy, FAILED, lambda e: [f"{e}; nothing more was done"]),
    (PagingStopped, FAILED, lambda e: [f"{e}; nothing more was done"]),  # a read that would never end
    (
        LeaseLost,  # this pass's own lease: not another sync
        FAILED,
        lambda e: [f"the pass stopped before its next write: {e}. The next pass carries on from it."],
    ),
    (
        CursorBusy,
        FAILED,
        lambda e: [
            f"another sync holds the cursors ({e}); this one did nothing. Try again when it ends; if none "
            "is running, one stopped without letting go, and its lease lapses within a minute"
        ],
    ),
    (
        AuthError,
        FAILED,
        lambda e: [f"authentication or permission failure: {e}. Run `python -m provisioning doctor`."],
    ),
    (
        TransientError,
        FAILED,
        lambda e: [
            f"{e}: this failed for now (a service that did not answer, a full disk); nothing more was "
            "done, run again later"
        ],
    ),
    (ProvisioningError, FAILED, lambda e: [f"{type(e).__name__}: {e}"]),
)


def _problems_of(error: Exception) -> tuple[list[str], int]:
    """What to print for a command that ``error`` ended, and its exit code (``FAILURES``)."""
    for kind, code, explained in FAILURES:
        if isinstance(error, kind):
            return explained(error), code
    # a bug, or a failure no adapter mapped: one line, not a traceback
    log.debug("unexpected failure", exc_info=error)
    return [f"unexpected {type(error).__name__}: {error} (run with --verbose for details)"], FAILED


def _state_named() -> str:
    """The state the settings name, for a message about it."""
    from provisioning.bootstrap import state_location

    try:
        return state_location(Settings())
    except Exception:  # the settings were read once already; this only words a message
        return "the state"


def _counts_before(error: BaseException | None) -> dict[str, int]:
    """What a run that ``error`` ended had done by then (zeros when it never started): honest counts."""
    done = partial_report(error) if error is not None else None
    return done.totals() if done is not None else dict.fromkeys(COUNT_KEYS, 0)


def _setting_problems(error: ValidationError) -> list[str]:
    """One line per setting, named as the environment spells it; the value is never echoed."""
    lines = []
    for detail in error.errors(include_url=False, include_input=False):
        name = ".".join(str(p) for p in detail["loc"])
        lines.append(f"setting {name}: {str(detail['msg']).removeprefix('Value error, ')}")
    return lines


def _prepare(
    config_path: Path, dry_run: bool
) -> tuple[ProvisioningConfig, Settings, AbstractAsyncContextManager[Services]]:
    """The mappings file first (a bad one should not cost a connection), then the settings and the
    services to open."""
    from provisioning.bootstrap import open_services

    config = load_config(config_path)
    settings = _checked_settings(writing=not dry_run)
    return config, settings, open_services(settings, dry_run=dry_run)


def _checked_settings(*, writing: bool) -> Settings:
    """Every setting, checked before any work: the values (``Settings``), then the state folder they
    name, which a command that only reads may not write."""
    settings = Settings()
    folder = state_folder_problem(settings, writing=writing)
    if folder:
        raise ConfigError([f"setting PROVISIONING_STATE ({settings.provisioning_state}): {folder}"])
    return settings


def _deployed_endpoint(settings: Settings) -> Any:
    """Where the deployed app listens (GRAPH_NOTIFICATION_URL), for doctor's trial subscriptions."""
    from provisioning.bootstrap import webhook_endpoint

    return webhook_endpoint(settings)


async def _run(
    services: Services,
    config: ProvisioningConfig,
    settings: Settings,
    dry_run: bool,
    progress: ProgressCallback,
) -> Run:
    from provisioning.service.policy import resolve_policy

    policy = await resolve_policy(config, services.directory, services.druva)
    initial = settings.provisioning_initial_mode
    return Run(services, policy, dry_run=dry_run, progress=progress, initial_mode=initial)


@app.command()
def sync(
    config: ConfigOption,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Plan only: write nothing to Druva or state.")
    ] = False,
    full: Annotated[bool, typer.Option("--full", help="Read every account, not only what changed.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="End with one JSON line of counts.")] = False,
    verbose: VerboseOption = False,
) -> None:
    """Bring Druva in step with Entra: what changed since the last run, or everything with --full."""
    output = Output(json_output)

    async def job(out: Output) -> int:
        from provisioning.service.sync import run_sync

        loaded, settings, opened = _prepare(config, dry_run)
        async with opened as services:
            with _progress(out, enabled=not json_output) as progress:
                run = await _run(services, loaded, settings, dry_run, progress)
                report = await run_sync(run, full=full)
        _print_report(out, report)
        if json_output:
            print(json.dumps(report.totals()), flush=True)  # the contract's last stdout line
        return report.exit_code

    _main(job, output, verbose)


@app.command("import")
def import_(
    config: ConfigOption,
    upns: Annotated[list[str], typer.Argument(help="User principal names (or object ids) to import now.")],
    verbose: VerboseOption = False,
) -> None:
    """Import named users now, through the mapping each one matches."""
    output = Output()

    async def job(out: Output) -> int:
        from provisioning.service.import_and_explain import import_accounts

        loaded, settings, opened = _prepare(config, False)
        async with opened as services:
            run = await _run(services, loaded, settings, False, _quiet)
            report = await import_accounts(run, upns)
        for decision in report.decisions:
            out.console.print(printable(decision.describe()), markup=False)
        for note in report.notes:
            out.problem(note)
        for failure in report.failures:
            out.problem(f"{failure.principal}: {failure.error}")
        _print_counts(out, report)
        return report.exit_code

    _main(job, output, verbose)


@app.command()
def explain(
    config: ConfigOption,
    upn: Annotated[str, typer.Argument(help="User principal name (or object id).")],
    verbose: VerboseOption = False,
) -> None:
    """Why an account gets (or does not get) its Druva profile, storage and quota, and its history."""
    output = Output()

    async def job(out: Output) -> int:
        from provisioning.entrypoints.explain_view import render_explanation
        from provisioning.service.import_and_explain import UnknownAccount, explain

        loaded, settings, opened = _prepare(config, True)
        async with opened as services:
            run = await _run(services, loaded, settings, True, _quiet)
            try:
                explanation = await explain(run, upn)
            except UnknownAccount as unknown:
                out.problem(str(unknown))
                return FAILED
        render_explanation(out.console, explanation, run.policy)
        return OK

    _main(job, output, verbose)


@app.command()
def search(
    config: ConfigOption,
    text: Annotated[
        str, typer.Argument(help="The first letters of a display name, given name, surname, mail or UPN.")
    ],
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=999, help="Show at most this many accounts.")
    ] = 25,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the accounts as one JSON array.")
    ] = False,
    verbose: VerboseOption = False,
) -> None:
    """Find Entra accounts by name before importing them: each one's mapping, Druva status, and the
    import command for those that can be imported."""
    from provisioning.service.search import BadSearch, search_text

    output = Output(json_output)
    try:
        wanted = search_text(text)
    except BadSearch as bad:  # before the mappings file or any connection
        output.problem(str(bad))
        raise typer.Exit(BAD_INPUT) from None

    async def job(out: Output) -> int:
        from provisioning.entrypoints.search_view import render_search, search_json
        from provisioning.service.search import search as find

        loaded, settings, opened = _prepare(config, True)
        async with opened as services:
            run = await _run(services, loaded, settings, True, _quiet)
            result = await find(run, wanted, limit)
        if json_output:
            print(printable_json(search_json(result)), flush=True)
        if not result.found:
            found_none = f"no Entra account's name, mail or user principal name starts with {wanted!r}"
            out.problem(found_none)  # problem() escapes: the text is the admin's, not markup
            return FAILED
        render_search(out.console, result, config, lines=not json_output)
        return OK

    _main(job, output, verbose)


@app.command()
def doctor(config: ConfigOption, verbose: VerboseOption = False) -> None:
    """Check Graph, Druva and every mapping before automatic import is turned on."""
    output = Output()

    async def job(out: Output) -> int:
        from provisioning.service.doctor import KEY_MANAGEMENT, diagnose

        loaded, settings, opened = _prepare(config, True)
        async with opened as services:
            findings = await diagnose(loaded, services, _deployed_endpoint(settings))
        if out.console.is_terminal:
            table = Table("area", "check", "result", "detail", title="doctor")
            for finding in findings:
                verdict = "[green]ok[/]" if finding.probe.ok else "[bold red]FAILED[/]"
                detail = shown(finding.probe.detail)  # a service's error text: no markup, no secret
                table.add_row(shown(finding.area), shown(finding.probe.check), verdict, detail)
            out.console.print(table)
        else:  # one unwrapped line per check, for logs and scripts
            for finding in findings:
                verdict = "ok" if finding.probe.ok else "FAILED"
                line = f"{verdict:6} {finding.area}: {finding.probe.check}: {finding.probe.detail}"
                out.console.print(printable(line), markup=False)
        out.console.print(f"[bold]Note:[/] {KEY_MANAGEMENT}")
        return OK if all(f.probe.ok for f in findings) else FAILED

    _main(job, output, verbose)


@app.command()
def status(
    config: ConfigOption,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    verbose: VerboseOption = False,
) -> None:
    """Health at a glance from the state store; exits 1 when the product needs a human (a probe)."""
    output = Output(json_output)

    async def job(out: Output) -> int:
        from provisioning.entrypoints.status_view import render_no_state, render_status

        load_config(config)  # a mappings file the next pass would refuse is bad input here too
        settings = _checked_settings(writing=False)
        try:
            found = await _read_status(settings)
        except NoState as missing:
            render_no_state(out.console, str(missing), json_output=json_output)
            return FAILED
        render_status(out.console, found, json_output=json_output)
        return OK if found.healthy else FAILED

    _main(job, output, verbose)


async def _read_status(settings: Settings) -> Status:
    from provisioning.bootstrap import open_state, state_location, system_clock
    from provisioning.service.status import read_status

    state = await open_state(settings, existing_only=True)
    try:
        return await read_status(state, system_clock().now(), settings.provisioning_initial_mode)
    except (ValueError, TypeError, KeyError) as error:  # status only reads: a record it cannot decode
        raise unreadable_record(state_location(settings), error) from error
    finally:
        await state.aclose()


MAX_CONFIRMED_CREATES = 50_000_000  # Entra's largest directory: a bigger number would switch the limit off


@app.command("mode")
def mode_(
    config: ConfigOption,
    wanted: Annotated[
        str | None,
        typer.Argument(
            help="plan (write nothing to Druva) or apply; none shows the mode and the latest plans."
        ),
    ] = None,
    confirm_creates: Annotated[
        int | None,
        typer.Option(
            "--confirm-creates",
            min=0,
            max=MAX_CONFIRMED_CREATES,
            help="With apply: how many Druva users the first applying pass may create (the plan's creates).",
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    verbose: VerboseOption = False,
) -> None:
    """Plan-only or apply: show the state's mode and its latest plans, or switch it."""
    from provisioning.domain.golive import Mode

    output = Output(json_output)
    if wanted is not None and wanted.strip().lower() not in {m.value for m in Mode}:
        output.problem(f"mode must be plan or apply, not {wanted!r}")
        raise typer.Exit(BAD_INPUT)
    if confirm_creates is not None and (wanted or "").strip().lower() != Mode.APPLY.value:
        output.problem("--confirm-creates goes with `mode apply` only")
        raise typer.Exit(BAD_INPUT)
    target = Mode(wanted.strip().lower()) if wanted is not None else None

    async def job(out: Output) -> int:
        from provisioning.bootstrap import local_state_missing, open_state, state_location, system_clock
        from provisioning.entrypoints.mode_view import render_mode
        from provisioning.service.golive import latest_plans, mode_of, switch_mode

        load_config(config)  # a mappings file the next pass would refuse is bad input here too
        settings = _checked_settings(writing=target is not None)  # only a switch writes
        initial = settings.provisioning_initial_mode
        where = state_location(settings)
        if local_state_missing(settings):
            # An emergency `mode plan` that silently made a new local state would miss the deployed app.
            raise ConfigError(
                [
                    f"no state at {where}: nothing to show or switch. For the deployed app's state set "
                    "PROVISIONING_TABLE_ENDPOINT (see infra/README.md)"
                ]
            )
        # The state alone: switching the mode needs neither Graph nor the Druva secret.
        state = await open_state(settings, existing_only=target is None)
        try:
            if target is not None:
                now = system_clock().now()
                await switch_mode(state, now, initial, target, confirm_creates=confirm_creates)
            record, plans = await mode_of(state, initial), await latest_plans(state)
        finally:
            await state.aclose()
        render_mode(out.console, record, plans, json_output=json_output, where=where)
        return OK

    _main(job, output, verbose)


@app.command()
def rebind(
    config: ConfigOption,
    force: Annotated[
        bool, typer.Option("--force", help="Re-bind even though the links say the Druva tenant is another.")
    ] = False,
    verbose: VerboseOption = False,
) -> None:
    """Bind the state to the Entra tenant and Druva credential the settings name now (after a new Druva
    credential or API URL for the same tenants). A sample of the links is checked against Druva first."""
    output = Output()

    async def job(out: Output) -> int:
        from provisioning.service.binding import rebind as rebind_state

        _, _, opened = _prepare(config, False)
        async with opened as services:
            before, after, evidence = await rebind_state(services, force=force)
        was = before.describe() if before else "nothing"
        out.console.print(printable(f"re-bound from {was} to {after.describe()}: {evidence.describe()}"))
        return OK

    _main(job, output, verbose)


def _quiet(stage: str, done: int, total: int | None) -> None:
    return None


class _progress:
    """A rich progress bar fed by the service's progress callback (only on a terminal)."""

    def __init__(self, out: Output, *, enabled: bool) -> None:
        self.enabled = enabled and out.console.is_terminal
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=out.console,
            transient=True,
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> ProgressCallback:
        if self.enabled:
            self.bar.start()
        return self.update

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.stop()

    def update(self, stage: str, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(stage, total=total)
        self.bar.update(self.tasks[stage], completed=done, total=total)


SHOWN_DECISIONS = 50  # a big first import would otherwise bury the summary; explain shows any account


def _print_report(out: Output, report: RunReport) -> None:
    if report.dry_run:
        out.console.print(f"[bold]Plan[/] ({report.kind} pass, dry run: nothing written)")
        for decision in report.decisions:
            out.console.print("  " + printable(decision.describe()), markup=False)
    elif not report.safety_stopped:
        failed = {f.entra_id for f in report.failures}
        done = [d for d in report.decisions if d.entra_id not in failed and d.actions]
        for decision in done[:SHOWN_DECISIONS]:
            out.console.print("  " + printable(decision.describe()), markup=False)
        if len(done) > SHOWN_DECISIONS:
            out.console.print(f"  … and {len(done) - SHOWN_DECISIONS} more (`explain` shows any account)")
    for note in report.notes:
        out.console.print(f"[yellow]note:[/] {shown(note)}")
    for failure in report.failures:
        out.problem(f"{failure.principal}: {failure.error}")
    _print_held(out, report)
    _print_counts(out, report)


def _print_held(out: Output, report: RunReport) -> None:
    """Accounts left as they are for now, and why (they count as skipped)."""
    for decision in report.held[:SHOWN_DECISIONS]:
        why = decision.hold.detail if decision.hold else ""
        out.console.print(f"  [dim]held[/] {shown(decision.principal)}: {shown(why)}")
    if len(report.held) > SHOWN_DECISIONS:
        out.console.print(f"  … and {len(report.held) - SHOWN_DECISIONS} more held (`status` lists them)")


def _print_counts(out: Output, report: RunReport) -> None:
    title = f"{report.kind} run {report.run_id}" + (" (dry run)" if report.dry_run else "")
    table = Table(*COUNT_KEYS, title=title)
    totals = report.totals()
    table.add_row(*(str(totals[key]) for key in COUNT_KEYS))
    out.console.print(table)
