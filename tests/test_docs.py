"""The documents a maintainer reads agree with the code: every section the code cites exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CITATION = re.compile(r"algorithms\.md §(\d+)")


def tracked_texts() -> dict[str, str]:
    names = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {
        name: (ROOT / name).read_text()
        for name in names
        if name.endswith((".py", ".md", ".html")) and (ROOT / name).is_file()
    }


def test_every_cited_section_of_the_algorithms_exists():
    headings = set(re.findall(r"^## (\d+)\. ", (ROOT / "docs/algorithms.md").read_text(), re.M))
    assert {"1", "2", "3", "4", "5", "6", "7"} <= headings
    cited = {
        (name, section)
        for name, text in tracked_texts().items()
        for section in CITATION.findall(text)
    }
    assert len(cited) > 20, "the code cites the algorithms page"
    missing = sorted((name, section) for name, section in cited if section not in headings)
    assert not missing, f"cited sections that docs/algorithms.md lacks: {missing}"


def test_no_citation_of_a_document_outside_the_repository():
    stale = sorted(name for name, text in tracked_texts().items() if re.search(r"SPEC §", text))
    assert stale == ["tests/test_docs.py"], f"cite docs/algorithms.md instead: {stale}"


def test_every_path_the_documents_name_exists():
    """A renamed module leaves no stale path in the README, CONTRIBUTING or the algorithms."""
    named = re.compile(
        r"[`(]((?:analysis|server|web|tests|benchmarks|docs|alembic|docker)/[\w./-]*)"
    )
    documents = ("README.md", "CONTRIBUTING.md", "docs/algorithms.md")
    paths = {(doc, path.rstrip("/.")) for doc in documents for path in named.findall(read(doc))}
    assert len(paths) > 30
    missing = sorted((doc, path) for doc, path in paths if not (ROOT / path).exists())
    assert not missing, f"paths that do not exist: {missing}"


def read(name: str) -> str:
    return (ROOT / name).read_text()
