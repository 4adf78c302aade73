"""A small read-only model of Bicep source, built on tree-sitter-bicep, for the infra tests.

There is no Bicep compiler offline, so the tests parse the templates with the tree-sitter grammar and
inspect the syntax tree: declarations, resource bodies, object properties and literal values.

Two gaps in tree-sitter-bicep 1.1.0 (December 2024) are bridged here, narrowly:

- It predates the ``extension <alias>`` statement. Such a line is blanked (same length, so error
  positions stay true) before parsing, and its alias is returned so that a test can check it against
  ``bicepconfig.json``. Nothing else is rewritten.
- It does not know ``.bicepparam`` files. Their ``param x = value`` lines become ``var   x = value``
  (same length), which the grammar parses with the same expression rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import tree_sitter
import tree_sitter_bicep

PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))

_EXTENSION_LINE = re.compile(rb"^extension[ \t]+([A-Za-z_][A-Za-z0-9_]*)[ \t]*$", re.MULTILINE)
_PARAM_ASSIGNMENT = re.compile(rb"^param(?=[ \t])", re.MULTILINE)

Node = tree_sitter.Node


def text(node: Node | None) -> str:
    return (node.text or b"").decode() if node is not None else ""


def named(node: Node) -> list[Node]:
    """Named children without comments (the grammar keeps comments as extra nodes anywhere)."""
    return [child for child in node.named_children if child.type != "comment"]


@dataclass(frozen=True)
class SyntaxProblem:
    line: int
    column: int
    kind: str
    snippet: str

    def __str__(self) -> str:
        return f"{self.line}:{self.column} {self.kind} near {self.snippet!r}"


def prepare(source: bytes, *, bicepparam: bool = False) -> tuple[bytes, list[str]]:
    """The source the grammar can read, and the extension aliases that were blanked out of it."""
    aliases = [match.group(1).decode() for match in _EXTENSION_LINE.finditer(source)]
    source = _EXTENSION_LINE.sub(lambda match: b" " * len(match.group(0)), source)
    if bicepparam:
        source = _PARAM_ASSIGNMENT.sub(b"var  ", source)
    return source, aliases


def syntax_problems(source: bytes, *, bicepparam: bool = False) -> list[SyntaxProblem]:
    """Every ERROR and MISSING node in the parse tree, with 1-based positions."""
    prepared, _ = prepare(source, bicepparam=bicepparam)
    tree = PARSER.parse(prepared)
    problems: list[SyntaxProblem] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            kind = f"MISSING {node.type}" if node.is_missing else "ERROR"
            row, column = node.start_point
            problems.append(SyntaxProblem(row + 1, column + 1, kind, text(node)[:60]))
        stack.extend(node.children)
    return sorted(problems, key=lambda problem: (problem.line, problem.column))


@dataclass
class Declaration:
    kind: str  # param, var, resource, module, output
    name: str
    node: Node
    decorators: list[str] = field(default_factory=list)

    @property
    def value(self) -> Node | None:
        """Default of a param, value of a var or output, body object of a resource or module."""
        children = named(self.node)
        if self.kind in {"resource", "module"}:
            for child in children:
                if child.type == "object":
                    return child
                if child.type == "if_statement":
                    return next(c for c in named(child) if c.type == "object")
                if child.type == "for_statement":
                    return child.child_by_field_name("body")
            return None
        if self.node.type == "parameter_declaration":
            return children[2] if len(children) > 2 else None
        return children[-1]

    @property
    def condition(self) -> Node | None:
        for child in named(self.node):
            if child.type == "if_statement":
                condition = named(child)[0]
                while condition.type == "parenthesized_expression":
                    condition = named(condition)[0]
                return condition
        return None

    @property
    def is_loop(self) -> bool:
        return any(child.type == "for_statement" for child in named(self.node))

    @property
    def resource_type(self) -> str:
        """``Microsoft.Web/sites`` of ``'Microsoft.Web/sites@2024-04-01'``."""
        return self.type_string.split("@")[0]

    @property
    def type_string(self) -> str:
        return literal(named(self.node)[1]) or ""

    @property
    def existing(self) -> bool:
        return any(child.type == "existing" for child in self.node.children)


_DECLARATIONS = {
    "parameter_declaration": "param",
    "variable_declaration": "var",
    "resource_declaration": "resource",
    "module_declaration": "module",
    "output_declaration": "output",
}


class Template:
    """The declarations of one ``.bicep`` (or ``.bicepparam``) file."""

    def __init__(self, path: Path, source: bytes | None = None) -> None:
        self.path = path
        self.source = path.read_bytes() if source is None else source
        self.is_bicepparam = path.suffix == ".bicepparam"
        prepared, self.extensions = prepare(self.source, bicepparam=self.is_bicepparam)
        self.root = PARSER.parse(prepared).root_node
        self.declarations: list[Declaration] = []
        self.target_scope: str | None = None
        self.using: str | None = None
        pending: list[str] = []
        for node in named(self.root):
            if node.type == "decorators":
                pending = [text(d) for d in named(node)]
            elif node.type in _DECLARATIONS:
                kind = _DECLARATIONS[node.type]
                if self.is_bicepparam and kind == "var":
                    kind = "param"
                name = text(named(node)[0])
                self.declarations.append(Declaration(kind, name, node, pending))
                pending = []
            elif node.type == "target_scope_assignment":
                self.target_scope = literal(named(node)[0])
            elif node.type == "using_statement":
                self.using = literal(named(node)[0])

    def of_kind(self, kind: str) -> dict[str, Declaration]:
        return {d.name: d for d in self.declarations if d.kind == kind}

    @property
    def params(self) -> dict[str, Declaration]:
        return self.of_kind("param")

    @property
    def variables(self) -> dict[str, Declaration]:
        return self.of_kind("var")

    @property
    def resources(self) -> dict[str, Declaration]:
        return self.of_kind("resource")

    @property
    def modules(self) -> dict[str, Declaration]:
        return self.of_kind("module")

    @property
    def outputs(self) -> dict[str, Declaration]:
        return self.of_kind("output")

    def resources_of_type(self, resource_type: str) -> list[Declaration]:
        return [r for r in self.resources.values() if r.resource_type == resource_type]

    def one(self, resource_type: str) -> Declaration:
        found = self.resources_of_type(resource_type)
        assert len(found) == 1, f"{self.path.name}: expected one {resource_type}, found {len(found)}"
        return found[0]

    def follow(self, node: Node | None) -> Node | None:
        """The expression behind a variable name (repeatedly), or the node itself."""
        while node is not None and node.type == "identifier" and text(node) in self.variables:
            node = self.variables[text(node)].value
        return node

    def render(self, node: Node | None) -> str | None:
        """The value of an expression as text, following variables, resource names and object
        members; parts that depend on deployment state stay as ``{expression}``. None when the
        expression is not a string, number, boolean or reference to one of those."""
        if node is None:
            return None
        if node.type == "string":
            parts = []
            for child in named(node):
                if child.type == "string_content":
                    parts.append(text(child))
                elif child.type == "escape_sequence":
                    parts.append(text(child)[1:])
                elif child.type == "interpolation":
                    inner = named(child)[0]
                    rendered = self.render(inner)
                    parts.append(rendered if rendered is not None else "{" + text(inner) + "}")
            return "".join(parts)
        if node.type in {"number", "boolean"}:
            return text(node)
        if node.type == "identifier":
            variable = self.variables.get(text(node))
            return self.render(variable.value) if variable else None
        if node.type == "member_expression":
            target = node.child_by_field_name("object")
            member = node.child_by_field_name("property")
            if target is None or member is None or target.type != "identifier":
                return None
            name = text(target)
            if name in self.resources and text(member) == "name":
                return self.render(prop(self.resources[name].value, "name"))
            variable = self.variables.get(name)
            if variable and variable.value is not None and variable.value.type == "object":
                return self.render(prop(variable.value, text(member)))
        return None


def key_of(object_property: Node) -> str:
    """The key as written: ``name`` for ``name:`` and ``'quoted-key':``, ``${x.id}`` for ``'${x.id}':``."""
    key = named(object_property)[0]
    return text(key)[1:-1] if key.type == "string" else text(key)


def properties(obj: Node | None) -> dict[str, Node]:
    """Key -> value node of an object literal (later duplicates win, as in ARM)."""
    if obj is None or obj.type != "object":
        return {}
    found = {}
    for child in named(obj):
        if child.type == "object_property":
            found[key_of(child)] = named(child)[1]
    return found


def prop(obj: Node | None, path: str) -> Node | None:
    """``prop(body, 'properties.siteConfig.minTlsVersion')``: the value node, or None."""
    node = obj
    for part in path.split("."):
        node = properties(node).get(part)
        if node is None:
            return None
    return node


def literal(node: Node | None) -> str | None:
    """A string without interpolation, a number or a boolean, as text; otherwise None."""
    if node is None:
        return None
    if node.type == "string":
        if any(child.type == "interpolation" for child in named(node)):
            return None
        return "".join(
            text(child)[1:] if child.type == "escape_sequence" else text(child) for child in named(node)
        )
    if node.type in {"number", "boolean"}:
        return text(node)
    return None


def walk(node: Node) -> Iterator[Node]:
    """Every node under ``node``, in source order."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))
