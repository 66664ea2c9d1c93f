"""Every relative link in the README, DEVELOPERS.md, docs/ and the extensions' READMEs resolves:
to a file that exists and, for ``#anchor``, to a heading of that file (GitHub's anchor rules:
lower case, punctuation dropped, spaces to hyphens, ``-1``, ``-2`` ... for repeated headings).
Links inside code blocks and inline code are not links; ``http(s):`` and ``mailto:`` targets are
left to the reader.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted(
    [
        ROOT / "README.md",
        ROOT / "DEVELOPERS.md",
        ROOT / "extensions" / "vscode" / "README.md",
        ROOT / "extensions" / "neovim" / "README.md",
        *(ROOT / "docs").rglob("*.md"),
    ]
)
_FENCE = re.compile(r"^\s*(```|~~~)")
_CODE = re.compile(r"`+[^`]*`+")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def _prose(text: str) -> list[str]:
    """The lines of ``text`` outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def anchors(text: str) -> set[str]:
    """The anchors GitHub makes for the headings of the markdown ``text``."""
    seen: Counter[str] = Counter()
    out = set()
    for line in _prose(text):
        match = _HEADING.match(line)
        if not match:
            continue
        title = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", match.group(1))  # links keep their text
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        out.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    return out


def links(text: str) -> list[str]:
    """The link targets of the markdown ``text``, outside code."""
    return [target for line in _prose(text) for target in _LINK.findall(_CODE.sub("", line))]


def test_anchors_follow_githubs_rules() -> None:
    text = (
        "# Keel\n## `keel plan [OPTIONS] TASK`\n## Set up\n## Set up\n```\n# not a heading\n```\n"
    )
    assert anchors(text) == {"keel", "keel-plan-options-task", "set-up", "set-up-1"}


def test_links_skip_code() -> None:
    text = '[a](x.md) `[b](y.md)`\n```\n[c](z.md)\n```\n![d](img.png "title")\n'
    assert links(text) == ["x.md", "img.png"]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in links(page.read_text(encoding="utf-8")):
        if _EXTERNAL.match(target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text("utf-8")):
            broken.append(f"{target}: no heading #{anchor}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)
