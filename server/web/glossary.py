"""What every number on a page means, read from docs/algorithms.md §10, so a definition is
written once: the hover text of a column header, the neuron page's labels and the ``/indexes``
page all come from the same entry.

An entry is a ``### key · name`` heading followed by ``**Field.** text`` lines; the key is the
layer table's column name. A missing document or a malformed entry fails at start-up (the
templates would otherwise show empty definitions), and a test checks that every column has one.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "algorithms.md"
SECTION = "## 10. Every number on a page"
FIELDS = {
    "In short": "summary",
    "Range": "range",
    "Formula": "formula",
    "Perturbation": "perturbation",
    "Threshold": "threshold",
    "Source": "source",
}
_HEADING = re.compile(r"^### (?P<key>[a-z_]+) · (?P<name>.+)$")
_FIELD = re.compile(r"^\*\*(?P<field>[A-Za-z ]+)\.\*\* (?P<text>.+)$")


@dataclass(frozen=True)
class Definition:
    key: str
    name: str
    summary: str
    range: str
    formula: str
    perturbation: str
    threshold: str
    source: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class GlossaryError(ValueError):
    """docs/algorithms.md §10 is missing or an entry lacks a field."""


@cache
def glossary(document: Path = DOCUMENT) -> dict[str, Definition]:
    """Every entry of §10 by key, in the document's order."""
    try:
        text = document.read_text(encoding="utf-8")
    except OSError as error:
        raise GlossaryError(f"cannot read the definitions in {document}: {error}") from error
    if SECTION not in text:
        raise GlossaryError(f"{document} has no section {SECTION!r}")
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    entries: dict[str, Definition] = {}
    current: dict[str, str] | None = None
    for line in [*section.splitlines(), "### end · end"]:
        if heading := _HEADING.match(line):
            if current is not None:
                entries[current["key"]] = _definition(current, document)
            current = {"key": heading["key"], "name": heading["name"].strip()}
        elif current is not None and (field := _FIELD.match(line)):
            if field["field"] not in FIELDS:
                raise GlossaryError(f"{document}: unknown field {field['field']!r}")
            current[FIELDS[field["field"]]] = field["text"].strip()
    return entries


def _definition(entry: dict[str, str], document: Path) -> Definition:
    missing = [label for label, name in FIELDS.items() if name not in entry]
    if missing:
        raise GlossaryError(f"{document}: {entry['key']!r} lacks {', '.join(missing)}")
    return Definition(**entry)
