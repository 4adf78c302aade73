"""Reading the mappings file as untrusted input: bounded in size, depth and alias expansion.

A YAML file can be small and still expand to billions of values through aliases, nest deeper than
Python's stack, hold bytes that are not UTF-8, keys that are lists or numbers, and escapes that make
control characters or lone surrogates (which later fail deep inside a write to the state store). All of
that is refused here, before any value is built, each as one problem naming the line. What comes out
is plain data (dicts with text keys, lists, scalars) plus the node tree the error messages use to find
lines.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1024 * 1024  # a mappings file of hundreds of mappings is a few tens of KB
MAX_DEPTH = 32  # the deepest legitimate path is mappings[i].match.groups[j]: depth 4
MAX_VALUES = 50_000  # scalars, lists and mappings after every alias is expanded
SHOWN = 60  # characters of a value quoted in a message

MERGE_TAG = "tag:yaml.org,2002:merge"
# C0 controls except tab, LF and CR; DEL; C1 controls; lone surrogates (from "\ud800" escapes).
_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


class UnsafeYaml(ValueError):
    """The file cannot be read safely; ``problems`` holds one line per problem (without the source)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ReadYaml:
    data: Any
    tree: yaml.Node | None


def short(value: Any, limit: int = SHOWN) -> str:
    """``repr`` of a value, cut to ``limit`` characters: a 1 MB name must not make a 1 MB error line."""
    shown = repr(value)
    return shown if len(shown) <= limit else f"{shown[: limit - 1]}…"


def read_bytes(path: Path) -> bytes:
    """At most ``MAX_BYTES`` (+1 to notice more) of a regular file: a huge file or /dev/zero must not
    fill memory, and a FIFO must not hang the command."""
    data = read_regular(path, MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        megabytes = MAX_BYTES // (1024 * 1024)
        raise UnsafeYaml([f"the file is larger than {megabytes} MB; a mappings file is far smaller"])
    return data


# What a file is when it is not a regular one. Opening a FIFO for reading blocks until a writer comes
# (forever, for a command), a device may never end or may act on being opened, a socket cannot be opened.
_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)


class NotRegularFile(UnsafeYaml):
    """Configuration (the mappings file, the state file, a seed) is read only from a regular file."""


def not_regular(mode: int) -> str | None:
    """``"is a FIFO (named pipe), not a regular file"`` and the like, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "not a file")
    return f"is {kind}, not a regular file"


def regular_file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as configuration, found without opening it; None when it is a regular
    file or does not exist (the caller says what a missing file means). Symbolic links are followed."""
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):  # a file where a folder should be, above it
        return None
    return not_regular(mode)


def read_regular(path: Path, limit: int | None = None) -> bytes:
    """The bytes of a regular file (at most ``limit``), or ``NotRegularFile`` at once. The type is checked
    before opening (nothing blocks, no device is opened) and again on what was opened, without blocking,
    so a file swapped in between is refused too. ``OSError`` for a file that cannot be read."""
    problem = regular_file_problem(path)
    if problem is None:
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
        with os.fdopen(os.open(path, flags), "rb") as stream:
            problem = not_regular(os.fstat(stream.fileno()).st_mode)
            if problem is None:
                return stream.read() if limit is None else stream.read(limit)
    raise NotRegularFile([problem])


def decode(data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise UnsafeYaml(
            [f"line {line}: not UTF-8 text: byte 0x{data[error.start]:02x} at byte offset {error.start}"]
        ) from None
    return text


def read_yaml(text: str) -> ReadYaml:
    """Parse, check every bound, then build plain data. Raises ``UnsafeYaml`` or ``yaml.YAMLError``."""
    if len(text) > MAX_BYTES:
        raise UnsafeYaml([f"the text is longer than {MAX_BYTES} characters; a mappings file is far smaller"])
    _refuse_raw_characters(text)
    _check_shape(text)
    tree = yaml.compose(text, Loader=_LOADER)  # the depth is bounded now: composing recurses
    if tree is None:
        return ReadYaml(None, None)
    problems: list[str] = []
    _check_nodes(tree, problems)
    if problems:
        raise UnsafeYaml(problems)
    data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    return ReadYaml(data, tree)


def _refuse_raw_characters(text: str) -> None:
    problems = []
    for found in _FORBIDDEN.finditer(text):
        line = text.count("\n", 0, found.start()) + 1
        problems.append(f"line {line}: control character U+{ord(found.group()):04X} is not allowed")
    if problems:
        raise UnsafeYaml(problems)


def _check_shape(text: str) -> None:
    """Depth and alias count from the event stream, which is flat: nothing here recurses."""
    depth = aliases = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise UnsafeYaml([f"line {_line(event)}: nested more than {MAX_DEPTH} levels deep"])
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_VALUES:
                raise UnsafeYaml([f"line {_line(event)}: more than {MAX_VALUES} aliases"])


def _line(event: Any) -> int:
    mark = event.start_mark
    return int(mark.line) + 1 if mark is not None else 0


def _check_nodes(root: yaml.Node, problems: list[str]) -> None:
    """Keys must be text, scalars free of control characters, and the whole tree, with every alias
    expanded, at most ``MAX_VALUES`` nodes (the billion-laughs bound) and ``MAX_DEPTH`` deep (a chain
    of aliases nests without brackets). Sizes and heights are memoised per node, so the check is linear
    in the file, not in its expansion."""
    measured: dict[int, tuple[int, int]] = {}  # id(node) -> (values, height)
    active: set[int] = set()

    def refuse(node: yaml.Node, why: str) -> UnsafeYaml:
        return UnsafeYaml([f"line {node.start_mark.line + 1}: {why}"])

    def measure(node: yaml.Node, depth: int) -> tuple[int, int]:
        key = id(node)
        if key in active:
            raise refuse(node, "an alias refers to a block that contains it")
        if key not in measured:
            if depth > MAX_DEPTH:
                raise refuse(node, f"nested more than {MAX_DEPTH} levels deep (counting aliases)")
            active.add(key)
            measured[key] = _measure_children(node, depth, measure, problems)
            active.discard(key)
        values, height = measured[key]
        if values > MAX_VALUES:
            raise refuse(node, f"expands to more than {MAX_VALUES} values (aliases)")
        if depth + height > MAX_DEPTH:
            raise refuse(node, f"nested more than {MAX_DEPTH} levels deep (counting aliases)")
        return values, height

    measure(root, 0)


def _measure_children(node: yaml.Node, depth: int, measure: Any, problems: list[str]) -> tuple[int, int]:
    children: list[yaml.Node] = []
    if isinstance(node, yaml.ScalarNode):
        _check_scalar(node, problems)
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    elif isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            _check_key(key_node, problems)
            children += (key_node, value_node)
    values, height = 1, 0
    for child in children:
        child_values, child_height = measure(child, depth + 1)
        values, height = values + child_values, max(height, child_height + 1)
        if values > MAX_VALUES:
            break
    return values, height


def _check_key(node: yaml.Node, problems: list[str]) -> None:
    if node.tag == MERGE_TAG:
        return
    if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:str":
        shown = short(node.value) if isinstance(node, yaml.ScalarNode) else f"a {node.id}"  # type: ignore[attr-defined]
        problems.append(f"line {node.start_mark.line + 1}: key {shown} must be text")


def _check_scalar(node: yaml.ScalarNode, problems: list[str]) -> None:
    found = _FORBIDDEN.search(node.value)
    if found:
        problems.append(
            f"line {node.start_mark.line + 1}: value {short(node.value)} holds control character "
            f"or lone surrogate U+{ord(found.group()):04X}"
        )


# libyaml's parser when PyYAML has it (the wheels do): ten times faster on a 1 MB file.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_LOADER):  # type: ignore[misc]
    """Duplicate keys are refused (a parser would keep the last one); merge keys (``<<``) still work,
    and a key written in the block wins over the same key merged in, as YAML specifies."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {short(key)} appears twice in the same block", key_node.start_mark
                )
            seen.add(key)
        built: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return built
