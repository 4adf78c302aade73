"""``GET /users`` query options as Graph (v1.0) treats them: ``$filter``, ``$search``, ``$count``,
``$orderby`` and ``$top``, including what Graph refuses.

Facts copied (microsoft-graph-docs-contrib: concepts/aad-advanced-queries.md,
includes/filter-directory-objects.md, concepts/search-query-parameter.md):
- Each user property supports some ``$filter`` operators by default and others only in an *advanced
  query* (header ``ConsistencyLevel: eventual`` and ``$count=true``); properties not in the table
  cannot be filtered at all. ``in`` is supported wherever ``eq`` is. ``ne`` and ``not`` are advanced
  only. ``endsWith`` is advanced only, and only on mail, userPrincipalName, otherMails, proxyAddresses.
- ``$search`` works only with ``ConsistencyLevel: eventual``. Its syntax: ``"property:text"`` clauses
  in double quotes (``"`` and ``\\`` escaped with a backslash), joined by upper-case ``AND`` / ``OR``,
  with parentheses. displayName and description are searched by token (split on spaces, case changes
  and character types); other properties by ``startsWith``.
- ``$filter`` with ``$orderby`` needs an advanced query; ``$count=true`` without the header is ignored.
- Directory string comparisons ignore case; ``startsWith(p, '')`` is refused.
- ``$top`` is 1..999.

The error texts are Graph's, as its documentation and answers quote them; syntax-error texts follow the
OData library Graph uses (an inference: the exact position Graph reports may differ).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

D, A = "default", "advanced"  # where an operator works: by default, or in advanced queries only
MAX_TOP = 999
ADVANCED_HINT = (
    "Try adding $count=true query parameter and ConsistencyLevel:eventual header. Refer to "
    "https://aka.ms/graph-docs/advanced-queries for more information"
)
SEARCH_NEEDS_HEADER = (
    "Request with $search query parameter only works through MSGraph with a special request header: "
    "'ConsistencyLevel: eventual'"
)


def _ops(eq: str | None = D, ne: str | None = A, **rest: str | None) -> dict[str, str]:
    table = {"eq": eq, "in": eq, "ne": ne, **rest}
    return {op: where for op, where in table.items() if where is not None}


# includes/filter-directory-objects.md, the user properties this product and its admins filter on.
USER_FILTERS: dict[str, dict[str, str]] = {
    "accountEnabled": _ops(ge=A, le=A),
    "city": _ops(ge=D, startswith=D, null=A),
    "companyName": _ops(eq=A, ge=A, le=A, startswith=A, null=A),
    "country": _ops(ge=D, le=D, startswith=D, null=A),
    "creationType": _ops(),
    "department": _ops(ge=D, le=D, startswith=D, null=A),
    "displayName": _ops(startswith=D, null=A),
    "employeeId": _ops(startswith=D, null=A),
    "employeeType": _ops(eq=A, ge=A, le=A, startswith=A),
    "givenName": _ops(ge=D, le=D, startswith=D, null=A),
    "id": _ops(),
    "jobTitle": _ops(ge=D, le=D, null=A),
    "mail": _ops(ge=D, le=D, startswith=D, endswith=A),
    "mailNickname": _ops(ge=D, le=D, startswith=D, null=A),
    "mobilePhone": _ops(eq=A, ge=A, le=A, startswith=A, null=A),
    "officeLocation": _ops(eq=A, ge=A, le=A, startswith=A, null=A),
    "onPremisesSamAccountName": _ops(eq=A, ge=A, le=A, startswith=A),
    "preferredLanguage": _ops(eq=A, ge=A, le=A, startswith=A, null=A),
    "state": _ops(ge=D, le=D, startswith=D, null=A),
    "surname": _ops(ge=D, le=D, startswith=D, null=A),
    "usageLocation": _ops(ge=D, le=D, startswith=D),
    "userPrincipalName": _ops(le=D, startswith=D, endswith=A),
    "userType": _ops(null=A),
}
_CANONICAL = {name.lower(): name for name in USER_FILTERS}
TOKENIZED = frozenset({"displayName", "description"})  # $search by token; other properties by prefix
# OData functions Graph knows but does not offer on users: refused as unsupported operators.
KNOWN_FUNCTIONS = frozenset(
    {"contains", "substringof", "tolower", "toupper", "trim", "length", "indexof", "substring", "concat"}
)


class QueryRefused(Exception):
    """Graph's 400 answer: ``code`` and ``message`` go into its error envelope."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _unsupported_property(name: str) -> QueryRefused:
    return QueryRefused(
        "Request_UnsupportedQuery",
        f"Unsupported or invalid query filter clause specified for property '{name}' of resource 'User'.",
    )


# $filter: tokens ---------------------------------------------------------------------------------------
_TOKEN = re.compile(
    r"\s*(?:(?P<string>')|(?P<open>\()|(?P<close>\))|(?P<comma>,)|(?P<word>[A-Za-z_$][\w.$/]*)"
    r"|(?P<number>-?\d+(?:\.\d+)?))"
)


@dataclass(frozen=True)
class Token:
    kind: str  # string | open | close | comma | word | number | end
    text: str
    at: int


def tokens(raw: str) -> list[Token]:
    """OData lexing: a string literal is quoted with ``'``, a ``'`` inside it written ``''``."""
    found: list[Token] = []
    at = 0
    while at < len(raw):
        if raw[at:].strip() == "":
            break
        match = _TOKEN.match(raw, at)
        if match is None:
            start = len(raw) - len(raw[at:].lstrip())
            raise _syntax(raw, start)
        kind = str(match.lastgroup)
        start = match.start(kind)
        if kind == "string":
            text, at = _string_literal(raw, start)
            found.append(Token("string", text, start))
            continue
        found.append(Token(kind, match.group(kind), start))
        at = match.end()
    found.append(Token("end", "", len(raw)))
    return found


def _string_literal(raw: str, start: int) -> tuple[str, int]:
    at, text = start + 1, []
    while at < len(raw):
        if raw[at] == "'":
            if raw[at + 1 : at + 2] == "'":
                text.append("'")
                at += 2
                continue
            return "".join(text), at + 1
        text.append(raw[at])
        at += 1
    raise QueryRefused(
        "BadRequest",
        f"Invalid filter clause: There is an unterminated string literal at position {start} in '{raw}'.",
    )


def _syntax(raw: str, at: int) -> QueryRefused:
    return QueryRefused("BadRequest", f"Invalid filter clause: Syntax error at position {at} in '{raw}'.")


# $filter: the expression tree ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Clause:
    """``property op value``, or ``startswith|endswith(property, value)``; ``in`` holds a tuple."""

    op: str
    prop: str
    value: Any


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class Either:  # or
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Both:  # and
    operands: tuple[Node, ...]


Node = Clause | Not | Either | Both
_COMPARISONS = frozenset({"eq", "ne", "ge", "le", "gt", "lt", "in"})


class _Parser:
    def __init__(self, raw: str) -> None:
        self.raw, self.items, self.at = raw, tokens(raw), 0

    @property
    def token(self) -> Token:
        return self.items[self.at]

    def take(self, kind: str, word: str | None = None) -> Token:
        token = self.token
        if token.kind != kind or (word is not None and token.text.lower() != word):
            raise _syntax(self.raw, token.at)
        self.at += 1
        return token

    def keyword(self, word: str) -> bool:
        if self.token.kind == "word" and self.token.text.lower() == word:
            self.at += 1
            return True
        return False

    def parse(self) -> Node:
        node = self.either()
        self.take("end")
        return node

    def either(self) -> Node:
        operands = [self.both()]
        while self.keyword("or"):
            operands.append(self.both())
        return operands[0] if len(operands) == 1 else Either(tuple(operands))

    def both(self) -> Node:
        operands = [self.unary()]
        while self.keyword("and"):
            operands.append(self.unary())
        return operands[0] if len(operands) == 1 else Both(tuple(operands))

    def unary(self) -> Node:
        if self.keyword("not"):
            return Not(self.unary())
        if self.token.kind == "open":
            self.take("open")
            node = self.either()
            self.take("close")
            return node
        word = self.take("word")
        if self.token.kind == "open":
            return self.function(word)
        return self.comparison(word)

    def function(self, name: Token) -> Node:
        function = name.text.lower()
        if function not in ("startswith", "endswith"):
            if function in KNOWN_FUNCTIONS:
                raise QueryRefused(
                    "Request_UnsupportedQuery",
                    f"Unsupported property filter clause operator '{name.text[:1].upper()}{name.text[1:]}'.",
                )
            raise QueryRefused(
                "BadRequest",
                f"Invalid filter clause: An unknown function with name '{name.text}' was found. This may "
                "also be a function import or a key lookup on a navigation property, which is not allowed.",
            )
        self.take("open")
        prop = self.take("word").text
        self.take("comma")
        value = self.take("string").text
        self.take("close")
        return Clause(function, prop, value)

    def comparison(self, prop: Token) -> Node:
        op = self.take("word")
        if op.text.lower() not in _COMPARISONS:
            raise _syntax(self.raw, op.at)
        if op.text.lower() == "in":
            self.take("open")
            values = [self.literal()]
            while self.token.kind == "comma":
                self.take("comma")
                values.append(self.literal())
            self.take("close")
            return Clause("in", prop.text, tuple(values))
        return Clause(op.text.lower(), prop.text, self.literal())

    def literal(self) -> Any:
        token = self.token
        if token.kind == "string":
            self.at += 1
            return token.text
        if token.kind == "number":
            self.at += 1
            return float(token.text) if "." in token.text else int(token.text)
        if token.kind == "word" and token.text.lower() in ("true", "false", "null"):
            self.at += 1
            return {"true": True, "false": False, "null": None}[token.text.lower()]
        raise _syntax(self.raw, token.at)


def parse_filter(raw: str) -> Node:
    """The ``$filter`` expression, or ``QueryRefused`` with Graph's answer to a malformed one."""
    return _Parser(raw).parse()


def clauses(node: Node) -> Iterable[tuple[Clause, bool]]:
    """Every clause, and whether it sits under a ``not``."""
    stack: list[tuple[Node, bool]] = [(node, False)]
    while stack:
        current, negated = stack.pop()
        if isinstance(current, Clause):
            yield current, negated
        elif isinstance(current, Not):
            stack.append((current.operand, True))
        else:
            stack.extend((operand, negated) for operand in reversed(current.operands))


def check_filter(node: Node, advanced: bool) -> None:
    """Refuse what Graph refuses: unknown properties and operators, empty prefixes, and operators that
    need an advanced query when it is not one (``not`` always does, on any property with ``eq``)."""
    for clause, negated in clauses(node):
        supported = USER_FILTERS.get(_CANONICAL.get(clause.prop.lower(), ""), {})
        op = "null" if clause.op == "eq" and clause.value is None else clause.op
        empty_prefix = clause.op in ("startswith", "endswith") and clause.value == ""
        if op not in supported or empty_prefix or (negated and "eq" not in supported):
            raise _unsupported_property(clause.prop)
        if advanced:
            continue
        if negated or supported[op] == A:
            name = "not" if negated else {"startswith": "startsWith", "endswith": "endsWith"}.get(op, op)
            raise QueryRefused(
                "Request_UnsupportedQuery",
                f"Operator '{name}' is not supported because the required parameters might be missing. "
                f"{ADVANCED_HINT}",
            )


def _text(value: Any) -> str | None:
    return None if value is None else str(value).lower()


def _compare(clause: Clause, value: Any) -> bool:
    """Directory semantics: strings compared without case; a multi-valued property matches when any
    element does."""
    if isinstance(value, list):
        return any(_compare(clause, element) for element in value)
    wanted = clause.value
    if isinstance(value, bool) or isinstance(wanted, bool):
        equal = value is wanted
    else:
        equal = _text(value) == _text(wanted) if wanted is not None else value is None
    text, prefix = _text(value), _text(wanted)
    if clause.op == "eq":
        return equal
    if clause.op == "ne":
        return not equal
    if clause.op == "in":
        return any(_text(value) == _text(option) for option in wanted)
    if text is None or prefix is None:
        return False
    return {
        "startswith": text.startswith(prefix),
        "endswith": text.endswith(prefix),
        "ge": text >= prefix,
        "le": text <= prefix,
        "gt": text > prefix,
        "lt": text < prefix,
    }[clause.op]


def matches(node: Node, user: Mapping[str, Any]) -> bool:
    if isinstance(node, Clause):
        return _compare(node, user.get(_CANONICAL.get(node.prop.lower(), node.prop)))
    if isinstance(node, Not):
        return not matches(node.operand, user)
    if isinstance(node, Either):
        return any(matches(operand, user) for operand in node.operands)
    return all(matches(operand, user) for operand in node.operands)


# $search -------------------------------------------------------------------------------------------------
_SEARCH_TOKEN = re.compile(
    r'\s*(?:(?P<clause>"(?:[^"\\]|\\.)*")|(?P<open>\()|(?P<close>\))|(?P<op>AND|OR)\b)'
)


@dataclass(frozen=True)
class SearchClause:
    prop: str
    text: str


@dataclass(frozen=True)
class SearchGroup:
    operator: str  # AND | OR
    operands: tuple[SearchNode, ...]


SearchNode = SearchClause | SearchGroup


class _SearchParser:
    """``"p:text" AND ("q:x" OR "r:y")``: AND binds tighter than OR, as in the filter grammar."""

    def __init__(self, raw: str) -> None:
        self.items: list[tuple[str, str]] = []
        at = 0
        while raw[at:].strip():
            match = _SEARCH_TOKEN.match(raw, at)
            if match is None:
                raise _search_syntax(f"invalid $search at position {at}")
            kind = str(match.lastgroup)
            self.items.append((kind, match.group(kind)))
            at = match.end()
        self.items.append(("end", ""))
        self.at = 0

    def take(self) -> tuple[str, str]:
        self.at += 1
        return self.items[self.at - 1]

    def operator(self, word: str) -> bool:
        if self.items[self.at] == ("op", word):
            self.at += 1
            return True
        return False

    def parse(self) -> SearchNode:
        tree = self.either()
        if self.items[self.at][0] != "end":
            raise _search_syntax("unexpected text after the $search expression")
        return tree

    def either(self) -> SearchNode:
        operands = [self.both()]
        while self.operator("OR"):
            operands.append(self.both())
        return operands[0] if len(operands) == 1 else SearchGroup("OR", tuple(operands))

    def both(self) -> SearchNode:
        operands = [self.term()]
        while self.operator("AND"):
            operands.append(self.term())
        return operands[0] if len(operands) == 1 else SearchGroup("AND", tuple(operands))

    def term(self) -> SearchNode:
        kind, text = self.take()
        if kind == "open":
            inner = self.either()
            if self.take()[0] != "close":
                raise _search_syntax("unbalanced parentheses")
            return inner
        if kind != "clause":
            raise _search_syntax(f"unexpected {text or 'end'}")
        body = re.sub(r"\\(.)", r"\1", text[1:-1])
        prop, colon, value = body.partition(":")
        canonical = _CANONICAL.get(prop.strip().lower())
        if not colon or canonical is None or not value:
            raise QueryRefused(
                "Request_UnsupportedQuery",
                f"Unsupported or invalid $search clause {text} for resource 'User'.",
            )
        return SearchClause(canonical, value)


def _search_syntax(detail: str) -> QueryRefused:
    return QueryRefused("Request_UnsupportedQuery", f"Syntax error in $search: {detail}.")


def parse_search(raw: str) -> SearchNode:
    return _SearchParser(raw).parse()


def _words(text: str) -> list[str]:
    """Graph's $search tokens: split on spaces, on a change of character type (letter, digit, other)
    and where a lower-case letter is followed by an upper-case one; compared without case."""
    words: list[str] = []
    current, previous = "", ""
    for char in text:
        kind = (
            "space"
            if char.isspace()
            else "digit"
            if char.isdigit()
            else "alpha"
            if char.isalpha()
            else "other"
        )
        camel = kind == "alpha" and char.isupper() and current[-1:].islower()
        if current and (kind != previous or camel):
            words.append(current.lower())
            current = ""
        if kind != "space":
            current += char
        previous = kind
    if current:
        words.append(current.lower())
    return words


def search_matches(tree: SearchNode, user: Mapping[str, Any]) -> bool:
    if isinstance(tree, SearchClause):
        value = user.get(tree.prop)
        values = value if isinstance(value, list) else [value]
        for one in values:
            if one is None:
                continue
            if tree.prop in TOKENIZED:
                have = _words(str(one))
                if all(any(w.startswith(want) for w in have) for want in _words(tree.text)):
                    return True
            elif str(one).lower().startswith(tree.text.lower()):
                return True
        return False
    check: Callable[[Iterable[bool]], bool] = all if tree.operator == "AND" else any
    return check(search_matches(operand, user) for operand in tree.operands)


# the whole request ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UserQuery:
    """What a ``GET /users`` asked for, validated."""

    filter: Node | None
    search: SearchNode | None
    top: int | None
    count: bool  # answer with @odata.count
    order_by: str | None

    def selects(self, user: Mapping[str, Any]) -> bool:
        if self.filter is not None and not matches(self.filter, user):
            return False
        return self.search is None or search_matches(self.search, user)


def user_query(query: Mapping[str, str], headers: Mapping[str, str]) -> UserQuery:
    """Validate the query options of ``GET /users`` (``headers`` with lower-case names) the way Graph
    does; raises ``QueryRefused``."""
    eventual = headers.get("consistencylevel", "").strip().lower() == "eventual"
    advanced = eventual and query.get("$count", "").lower() == "true"
    search: SearchNode | None = None
    if "$search" in query:
        if not eventual:
            raise QueryRefused("Request_UnsupportedQuery", SEARCH_NEEDS_HEADER)
        search = parse_search(query["$search"])
    node = None
    if "$filter" in query:
        node = parse_filter(query["$filter"])
        check_filter(node, advanced)
    order_by = query.get("$orderby")
    if order_by is not None:
        prop = order_by.split()[0] if order_by.split() else ""
        if prop not in ("displayName", "userPrincipalName") or (node is not None and not advanced):
            raise QueryRefused("Request_UnsupportedQuery", "Sorting not supported for current query.")
    top = None
    if "$top" in query:
        try:
            top = int(query["$top"])
        except ValueError:
            top = 0
        if not 1 <= top <= MAX_TOP:
            raise QueryRefused(
                "Request_BadRequest",
                f"Invalid page size specified: '{query['$top']}'. Must be between 1 and {MAX_TOP} inclusive.",
            )
    return UserQuery(node, search, top, eventual and query.get("$count", "").lower() == "true", order_by)


def ordered(ids: list[str], users: Mapping[str, Mapping[str, Any]], order_by: str | None) -> list[str]:
    if not order_by:
        return ids
    prop, *direction = order_by.split()
    reverse = bool(direction) and direction[0].lower() == "desc"
    return sorted(ids, key=lambda i: str(users[i].get(prop) or "").lower(), reverse=reverse)
