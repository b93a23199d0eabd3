"""Every reference to a design fact points at a page in this repository: no citation of the design notes that
live outside it, and every `docs/<page>.md` named in code, configs, tests or docs exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for folder in ("dpgen_bench", "methods", "baselines", "configs", "docs", "examples", "tests", "tools")
           for p in (ROOT / folder).rglob("*") if p.suffix in {".py", ".md", ".yaml", ".toml"} and p.is_file()]
SOURCES += [ROOT / "README.md"]


def test_nothing_cites_the_design_notes_outside_the_repository_by_section():
    pattern = re.compile("DESIGN" + r"\.md\s*§")
    hits = [f"{p.relative_to(ROOT)}" for p in SOURCES if pattern.search(p.read_text(errors="replace"))]
    assert not hits, f"cite a page under docs/ instead of the design notes: {hits}"


def test_every_docs_page_named_anywhere_exists():
    named = {m for p in SOURCES for m in re.findall(r"docs/([\w.-]+\.md)", p.read_text(errors="replace"))}
    missing = sorted(n for n in named if not (ROOT / "docs" / n).is_file())
    assert named and not missing, f"docs pages named but absent: {missing}"
