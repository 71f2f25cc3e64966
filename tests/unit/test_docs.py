"""The docs hold together: every relative link in README.md and docs/ resolves, README stays short.

Links are what a reader follows from README into docs/ and between pages; a page moved or a
heading renamed must fail here, not on a reader. Anchors are checked against GitHub's heading
slugs (lower case, punctuation dropped, spaces to hyphens, ``-1``/``-2`` for repeats).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest
from pydantic import BaseModel

from streamd.config import Config

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, ROOT / "models" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
README_MAX_LINES = 400

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`+[^`]*`+")
LINK = re.compile(r"(?<!!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, with inline code removed."""
    out, fenced = [], False
    for n, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append((n, INLINE_CODE.sub("", line)))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links keep their text
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        m = None if fenced else HEADING.match(line)
        if m:
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(path: Path) -> list[tuple[int, str]]:
    return [
        (n, m.group(1))
        for n, line in prose_lines(path.read_text(encoding="utf-8"))
        for m in LINK.finditer(line)
    ]


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    problems = []
    for n, target in links(path):
        if EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / unquote(file_part)).resolve() if file_part else path
        where = f"{path.relative_to(root)}:{n}: {target}"
        if not dest.exists():
            problems.append(f"{where}: no such file {dest}")
        elif anchor and dest.suffix == ".md" and unquote(anchor) not in anchors(dest):
            problems.append(f"{where}: no heading #{anchor} in {dest.relative_to(root)}")
    return problems


def test_slug_matches_github() -> None:
    assert slug("Event schema (version 1)") == "event-schema-version-1"  # parentheses dropped
    assert slug("Figures: AASIST-L on ../shared/data") == "figures-aasist-l-on-shareddata"
    assert slug("`streamd mic`: desktop test mode") == "streamd-mic-desktop-test-mode"
    assert slug("Library vs hand-written") == "library-vs-hand-written"


def test_checker_catches_a_broken_link_and_anchor(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## Real heading\n", encoding="utf-8")
    page.write_text(
        "[ok](other.md#real-heading) [gone](missing.md) [bad](other.md#nope)\n"
        "`[code](ignored.md)`\n```\n[fenced](ignored.md)\n```\n[web](https://example.com)\n",
        encoding="utf-8",
    )
    problems = broken_links(page, root=tmp_path)
    assert len(problems) == 2, problems
    assert "missing.md" in problems[0] and "#nope" in problems[1]


def test_there_are_pages_and_readme_links_into_them() -> None:
    assert (ROOT / "docs" / "design.md").exists()
    targets = {t.partition("#")[0] for _, t in links(README)}
    assert "docs/design.md" in targets


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    assert broken_links(path) == []


CITATION = re.compile(r'(docs/[\w./-]+\.md)(?:,?\s+"([^"]+)")?')


def test_code_cites_pages_and_headings_that_exist() -> None:
    """Docstrings point readers at docs/ pages (and a heading by its text); both must exist."""
    problems = []
    for py in sorted((ROOT / "streamd").rglob("*.py")):
        text = py.read_text(encoding="utf-8")
        where = py.relative_to(ROOT)
        if "DESIGN.md" in text:
            problems.append(f"{where}: cites DESIGN.md, which is not in the repository")
        for m in CITATION.finditer(text):
            page = ROOT / m.group(1)
            if not page.exists():
                problems.append(f"{where}: {m.group(1)} does not exist")
            elif m.group(2) and not any(
                a == slug(m.group(2)) or a.startswith(slug(m.group(2)) + "-") for a in anchors(page)
            ):
                problems.append(f"{where}: no heading {m.group(2)!r} in {m.group(1)}")
    assert problems == []


def config_keys(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every leaf key of the config, as the YAML spells it (aliases such as ``raise``)."""
    out = []
    for name, field in model.model_fields.items():
        key, kind = field.alias or name, field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            out += config_keys(kind, (*prefix, key))
        else:
            out.append((*prefix, key))
    return out


def test_design_lists_every_config_key() -> None:
    """docs/design.md "Configuration" names every key: its section and the key in backticks."""
    text = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    keys = config_keys(Config)
    assert len(keys) > 50
    missing = [
        ".".join(k)
        for k in keys
        if ".".join(k[:-1]) not in text
        or not re.search(rf"`(?:[\w.]+\.)?{re.escape(k[-1])}`", text)
    ]
    assert missing == [], f"add these keys to the tables in docs/design.md: {missing}"


def test_readme_is_a_short_guide() -> None:
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n < README_MAX_LINES, f"README.md has {n} lines; move detail into docs/"
