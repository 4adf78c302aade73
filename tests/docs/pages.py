"""Reading the Markdown pages the way the checks need: headings, tables, sections and links outside code,
and each heading's anchor as GitHub and as mkdocs make it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import markdown

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
# The Markdown files the checks read: the front door, the changelog and every page of the docs site.
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted(DOCS.glob("*.md"))]

_FENCE = re.compile(r"^(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_LINK = re.compile(r"(?<!!)\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
_CODE_SPAN = re.compile(r"`[^`]*`")


@dataclass(frozen=True)
class Heading:
    level: int
    text: str  # as written, Markdown included
    line: int


def lines_outside_code(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line that is not inside a fenced code block, fences included."""
    found, fenced = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if _FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            found.append((number, line))
    return found


def headings(text: str) -> list[Heading]:
    found = []
    for number, line in lines_outside_code(text):
        match = _HEADING.match(line)
        if match:
            found.append(Heading(len(match.group(1)), match.group(2), number))
    return found


def section(text: str, title: str) -> str:
    """The text under the heading ``title`` (as written), up to the next heading of its level or above."""
    lines = text.splitlines()
    marks = headings(text)
    for index, heading in enumerate(marks):
        if heading.text == title:
            end = next((h.line for h in marks[index + 1 :] if h.level <= heading.level), len(lines) + 1)
            return "\n".join(lines[heading.line : end - 1])
    raise AssertionError(f"no heading {title!r}")


def subheadings(text: str, title: str) -> list[str]:
    """The headings one level below ``title`` inside its section, as written."""
    level = next(h.level for h in headings(text) if h.text == title)
    return [h.text for h in headings(section(text, title)) if h.level == level + 1]


def cells(row: str) -> list[str]:
    """A table row's cells: split on the pipes that are neither escaped nor inside a code span."""
    shielded = _CODE_SPAN.sub(lambda code: code.group().replace("|", "\0"), row.replace("\\|", "\0"))
    return [cell.strip().replace("\0", "|") for cell in shielded.strip().strip("|").split("|")]


def tables(text: str) -> list[list[list[str]]]:
    """Every table outside code, as rows of cells, the header row first and the delimiter row left out."""
    found: list[list[list[str]]] = []
    current: list[list[str]] = []
    for _, line in [*lines_outside_code(text), (0, "")]:
        if line.lstrip().startswith("|"):
            row = cells(line)
            if not all(re.fullmatch(r":?-{3,}:?", cell) for cell in row):
                current.append(row)
        elif current:
            found.append(current)
            current = []
    return found


def code_blocks(text: str) -> list[str]:
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, re.DOTALL | re.MULTILINE)


def links(text: str) -> list[str]:
    """The targets of the inline links outside code."""
    found = []
    for _, line in lines_outside_code(text):
        found += _LINK.findall(_CODE_SPAN.sub("", line))
    return found


def rendered(heading: str) -> str:
    """A heading's text as a reader sees it: no code marks, emphasis or link targets."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    return text.replace("`", "").replace("**", "").replace("*", "")


def github_anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, each space a hyphen."""
    return re.sub(r"[^\w\- ]", "", rendered(heading).strip().lower()).replace(" ", "-")


@cache
def mkdocs_anchors(path: Path) -> tuple[str, ...]:
    """The anchors mkdocs gives a page's headings, in order (Python-Markdown's toc, as mkdocs uses it)."""
    page = markdown.Markdown(extensions=["toc", "tables", "fenced_code"])
    page.convert(path.read_text())
    ids: list[str] = []

    def walk(tokens: list[dict[str, object]]) -> None:
        for token in tokens:
            ids.append(str(token["id"]))
            children = token["children"]
            assert isinstance(children, list)
            walk(children)

    walk(page.toc_tokens)
    return tuple(ids)
