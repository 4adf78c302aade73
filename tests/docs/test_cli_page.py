"""docs/cli.md lists exactly the commands, flags and exit codes the code defines: the commands and their
options are read from the typer app's command tree (what ``--help`` prints), the exit codes from
``ExitCode``. A command, flag or exit code added, renamed or removed in one place and not the other fails."""

from __future__ import annotations

import re

import typer
import typer.core
import typer.main

from provisioning.entrypoints import cli
from provisioning.service.report import ExitCode
from tests.docs.pages import DOCS, code_blocks, section, subheadings, tables

PAGE = DOCS / "cli.md"
INVOCATION = "python -m provisioning "
FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def code_commands() -> dict[str, set[str]]:
    """Every visible command of the app and the flags it takes (``--help`` included), from typer's tree."""
    group = typer.main.get_command(cli.app)
    assert isinstance(group, typer.core.TyperGroup)  # an app of several commands
    context = typer.Context(group, info_name="provisioning")
    found: dict[str, set[str]] = {}
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        assert command is not None
        if command.hidden:
            continue
        own = typer.Context(command, info_name=name, parent=context)
        found[name] = {
            flag
            for param in command.get_params(own)
            if param.param_type_name == "option" and not getattr(param, "hidden", False)
            for flag in (*param.opts, *param.secondary_opts)
        }
    return found


def code_exit_codes() -> set[int]:
    return {int(code) for code in ExitCode} | {int(cli.BAD_INPUT)}


def synopsis(text: str) -> dict[str, set[str]]:
    """Command → the flags its synopsis line names (the comment after ``#`` left out)."""
    blocks = code_blocks(section(text, "Synopsis"))
    assert blocks, "the Synopsis section has no code block"
    found: dict[str, set[str]] = {}
    for line in blocks[0].splitlines():
        if not line.startswith(INVOCATION):
            continue
        name, _, rest = line.removeprefix(INVOCATION).partition(" ")
        assert name not in found, f"{name} has two synopsis lines"
        found[name] = set(FLAG.findall(rest.split("#", 1)[0]))
    return found


def common_flags(text: str) -> set[str]:
    """The flags the page says every command takes."""
    paragraph = next(p for p in section(text, "Synopsis").split("\n\n") if p.startswith("Every command also"))
    return set(re.findall(r"`(--?[\w-]+)`", paragraph))


def documented_commands(text: str) -> set[str]:
    names = subheadings(text, "Commands")
    assert all(re.fullmatch(r"`[\w-]+`", name) for name in names), names
    return {name.strip("`") for name in names}


def documented_exit_codes(text: str) -> list[int]:
    (table,) = tables(section(text, "Exit codes"))
    assert table[0][0] == "exit code", table[0]
    return [int(row[0]) for row in table[1:]]


def problems(text: str) -> list[str]:
    """How the page differs from the code, one line each; none when it says exactly what the code does."""
    found: list[str] = []
    commands = code_commands()
    listed = synopsis(text)
    common = common_flags(text)
    if set(listed) != set(commands):
        found.append(f"synopsis lists {sorted(listed)}, the app has {sorted(commands)}")
    if documented_commands(text) != set(commands):
        found.append(f"sections for {sorted(documented_commands(text))}, the app has {sorted(commands)}")
    for name, flags in commands.items():
        if not common <= flags:
            found.append(f"`{name}` does not take {sorted(common - flags)}, which 'every command' takes")
        said = listed.get(name, set()) | common
        if said != flags:
            found.append(f"`{name}`: the page says {sorted(said)}, the code takes {sorted(flags)}")
    codes = documented_exit_codes(text)
    if sorted(codes) != sorted(code_exit_codes()):
        found.append(f"exit codes on the page {codes}, in the code {sorted(code_exit_codes())}")
    return found


def test_the_command_line_page_matches_the_app() -> None:
    assert problems(PAGE.read_text()) == []


def test_the_app_has_the_commands_the_check_reads() -> None:
    # The introspection itself: if typer's tree were read wrongly, the check above would compare nothing.
    commands = code_commands()
    assert {"sync", "import", "status", "mode"} <= set(commands)
    assert {"--config", "--dry-run", "--full", "--json", "--verbose", "-v", "--help"} == commands["sync"]


def test_a_page_that_drifts_from_the_code_is_caught() -> None:
    text = PAGE.read_text()
    assert problems(text.replace(" [--full]", "", 1))  # a flag left out of the synopsis
    assert problems(text.replace("[--force]", "[--force] [--yes]", 1))  # a flag the code does not have
    assert problems(text.replace("### `rebind`", "### `rebinds`", 1))  # a section for no command
    drop_doctor = "\n".join(line for line in text.splitlines() if not line.startswith(INVOCATION + "doctor"))
    assert problems(drop_doctor)  # a command with no synopsis line
    assert problems(text.replace("| 3 | safety stop", "| 4 | safety stop", 1))  # an exit code the code lacks
    assert problems(text.replace("`--verbose` (`-v`)", "`--verbose` (`-v`), `--quiet`", 1))  # a common flag
