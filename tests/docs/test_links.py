"""Links between the Markdown files resolve. mkdocs --strict (``make docs``) checks the links between the
pages of docs/; this checks what it cannot: the links of README.md and CHANGELOG.md, and the links of
the pages to files outside docs/, which are written from the repository root (``/infra/README.md``) so
that GitHub resolves them. And every heading of the site gets the same anchor on GitHub and in mkdocs, so
a link that works in one works in the other."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tests.docs.pages import DOCS, PAGES, ROOT, github_anchor, headings, links, mkdocs_anchors


def target_of(page: Path, link: str) -> tuple[Path, str] | None:
    """The file and anchor a link names, or None for a link off this repository."""
    parts = urlsplit(link)
    if parts.scheme or parts.netloc:
        return None
    path = unquote(parts.path)
    if not path:
        return page, parts.fragment
    base = ROOT if path.startswith("/") else page.parent
    return (base / path.lstrip("/")).resolve(), parts.fragment


def link_problems(page: Path, text: str) -> list[str]:
    found = []
    for link in links(text):
        target = target_of(page, link)
        if target is None:
            continue
        path, anchor = target
        if not path.is_relative_to(ROOT) or not path.exists():
            found.append(f"{link}: no such file")
            continue
        if anchor:
            body = text if path == page else path.read_text() if path.suffix == ".md" else ""
            if anchor not in {github_anchor(h.text) for h in headings(body)}:
                found.append(f"{link}: no heading with that anchor")
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_names_a_file_and_a_heading_that_exist(page: Path) -> None:
    assert link_problems(page, page.read_text()) == []


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_each_heading_has_one_anchor_on_github_and_in_mkdocs(page: Path) -> None:
    on_github = [github_anchor(h.text) for h in headings(page.read_text())]
    assert on_github == list(mkdocs_anchors(page))
    assert len(set(on_github)) == len(on_github), "two headings with one anchor"


def test_a_broken_link_is_caught() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    assert link_problems(readme, text + "\n[x](docs/nowhere.md)\n")
    assert link_problems(readme, text + "\n[x](docs/cli.md#no-such-heading)\n")
    assert link_problems(readme, text + "\n[x](#no-such-heading)\n")
    assert link_problems(readme, text + "\n[x](/infra/README.md#no-such-heading)\n")
    assert not link_problems(readme, text + "\n[x](/infra/README.md#deploy-with-az)\n")
    page = DOCS / "deploy.md"
    assert link_problems(page, page.read_text() + "\n[x](/infra/nowhere.bicep)\n")
