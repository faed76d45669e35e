"""Every relative link in README.md and docs/ points at a file (and heading) that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`[^`]*`")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...


def links(text: str) -> list[str]:
    """The link targets of a Markdown text, outside fenced code blocks and inline code."""
    targets, in_fence = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            targets += LINK.findall(INLINE_CODE.sub("", line))
    return targets


def anchors(text: str) -> set[str]:
    """GitHub's anchors for the headings of a Markdown text."""
    slugs = set()
    in_fence = False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        heading = re.match(r"#{1,6}\s+(.+?)\s*#*\s*$", line)
        if heading and not in_fence:
            title = heading.group(1).lower().replace("`", "")
            slugs.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return slugs


def test_link_parsing_on_a_hand_written_page():
    page = "\n".join([
        "# A `page` title",
        "See [training](docs/training.md#the-split), ![plot](results/a.png) and [site](https://example.com).",
        "`[not a link](missing.md)`",
        "```",
        "[inside a fence](missing.md)",
        "```",
        "## Running on a board, here",
    ])
    assert links(page) == ["docs/training.md#the-split", "results/a.png", "https://example.com"]
    assert anchors(page) == {"a-page-title", "running-on-a-board-here"}


def test_the_pages_have_links_to_check():
    assert ROOT / "docs" / "README.md" in PAGES
    readme_links = links((ROOT / "README.md").read_text(encoding="utf-8"))
    assert "docs/README.md" in readme_links and len(readme_links) >= 10


@pytest.mark.parametrize("page", PAGES, ids=lambda path: str(path.relative_to(ROOT)))
def test_relative_links_resolve(page: Path):
    broken = []
    for target in links(page.read_text(encoding="utf-8")):
        if EXTERNAL.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        destination = (page.parent / path_part).resolve() if path_part else page
        if not destination.exists():
            broken.append(f"{target}: no file {destination}")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination.read_text(encoding="utf-8")):
            broken.append(f"{target}: no heading #{anchor} in {destination.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)} has broken links:\n" + "\n".join(broken)
