"""The URL grammar of neuron tables, parsed in one place (after Datasette).

``?_sort=color&_sort_desc=class`` sorts by colour ascending, then class descending (several
``_sort``/``_sort_desc`` keep their order in the query string); ``?color__gt=0.5`` filters (``gt``,
``gte``, ``lt``, ``lte``, ``eq``, ``ne``, ``isnull``; ``contains`` for text, in any case, as in
``?label__contains=curve``); ``?_dead=0`` hides dead neurons;
``?_size=50`` sets the page size and ``?_next=TOKEN`` continues after the row named by TOKEN
(keyset paging: the token is the last row's channel, so pages stay stable as filters change).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 5000
MAX_PARAMETERS = 64  # a view names a few sorts and filters; 700 repeats built a 386 KB page
_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
    "eq": operator.eq,
    "ne": operator.ne,
    "contains": lambda cell, words: words.casefold() in str(cell).casefold(),
}
TEXT_ONLY = ("contains",)


class QueryError(ValueError):
    """A query string that names an unknown column or operator, or a bad value."""


@dataclass(frozen=True)
class Filter:
    column: str
    op: str
    value: Any

    def matches(self, row: dict[str, Any]) -> bool:
        cell = row.get(self.column)
        if self.op == "isnull":
            return (cell is None) == bool(self.value)
        if cell is None:
            return False
        return _OPERATORS[self.op](cell, self.value)

    @property
    def param(self) -> tuple[str, str]:
        return f"{self.column}__{self.op}", _format(self.value)


GRIDS = ("nf", "fv")


@dataclass(frozen=True)
class TableQuery:
    sort: tuple[tuple[str, bool], ...] = ()  # (column, descending)
    filters: tuple[Filter, ...] = ()
    hide_dead: bool = False
    size: int = DEFAULT_PAGE_SIZE
    after: int | None = None
    extra: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    grid: str = "nf"  # what the layer page's grid shows: Neuron Features or visualisations

    def params(self, **changes: Any) -> list[tuple[str, str]]:
        """The query string of this view, with ``changes`` (sort=..., after=..., ...) applied."""
        sort = changes.get("sort", self.sort)
        after = changes.get("after", self.after)
        pairs = [("_sort_desc" if desc else "_sort", column) for column, desc in sort]
        pairs += [f.param for f in self.filters]
        if self.hide_dead:
            pairs.append(("_dead", "0"))
        if self.size != DEFAULT_PAGE_SIZE:
            pairs.append(("_size", str(self.size)))
        if after is not None:
            pairs.append(("_next", str(after)))
        grid = changes.get("grid", self.grid)
        if grid != "nf":
            pairs.append(("_grid", grid))
        return pairs

    def toggled_sort(self, column: str) -> tuple[tuple[str, bool], ...]:
        """Clicking a header: sort by it first (flip direction if it already leads)."""
        rest = tuple(s for s in self.sort if s[0] != column)
        if self.sort and self.sort[0][0] == column:
            return ((column, not self.sort[0][1]), *rest)
        return ((column, column != "channel"), *rest)


def parse_query(items: Sequence[tuple[str, str]], columns: dict[str, type]) -> TableQuery:
    """Parse query-string pairs against the table's ``columns`` (name → float, int, str or bool)."""
    sort: list[tuple[str, bool]] = []
    filters: list[Filter] = []
    hide_dead, size, after, grid = False, DEFAULT_PAGE_SIZE, None, "nf"
    if len(items) > MAX_PARAMETERS:
        raise QueryError(f"a table view takes at most {MAX_PARAMETERS} parameters")
    items = _with_form_filter(items)
    for key, value in items:
        if key in ("_sort", "_sort_desc"):
            if value not in columns:
                raise QueryError(f"cannot sort by unknown column {value!r}")
            if value not in (column for column, _ in sort):  # the first sort by a column counts
                sort.append((value, key == "_sort_desc"))
        elif key == "_dead":
            hide_dead = not _convert(key, value, bool_value)
        elif key == "_size":
            size = _bounded_int(key, value, 1, MAX_PAGE_SIZE)
        elif key == "_next":
            after = _bounded_int(key, value, 0, 10**9) if value else None
        elif key == "_grid":
            if value not in GRIDS:
                raise QueryError(f"_grid is one of {', '.join(GRIDS)}, not {value!r}")
            grid = value
        elif "__" in key:
            column, _, op = key.rpartition("__")
            if column not in columns:
                raise QueryError(f"cannot filter on unknown column {column!r}")
            if op not in _OPERATORS and op != "isnull":
                raise QueryError(
                    f"unknown filter operator {op!r} "
                    "(use gt, gte, lt, lte, eq, ne, isnull, or contains for text)"
                )
            if op in TEXT_ONLY and columns[column] is not str:
                raise QueryError(f"{column} is a number: filter it with gt, lt, eq, ...")
            parse = bool_value if op == "isnull" else PARSERS.get(columns[column], columns[column])
            filters.append(Filter(column, op, _convert(key, value, parse)))
        elif key.startswith("_"):
            raise QueryError(f"unknown parameter {key!r}")
    return TableQuery(tuple(sort), tuple(filters), hide_dead, size, after, grid=grid)


def apply_query(
    rows: list[dict[str, Any]], query: TableQuery, key: str = "channel"
) -> dict[str, Any]:
    """Filter, sort (nulls last in either direction) and page ``rows``."""
    kept = [r for r in rows if all(f.matches(r) for f in query.filters)]
    if query.hide_dead:
        kept = [r for r in kept if not r.get("dead")]
    for column, descending in reversed(query.sort or (("channel", False),)):
        present = [r for r in kept if r.get(column) is not None]
        missing = [r for r in kept if r.get(column) is None]
        present.sort(key=lambda r, c=column: r[c], reverse=descending)
        kept = present + missing
    start = 0
    if query.after is not None:
        positions = {row[key]: i for i, row in enumerate(kept)}
        start = positions.get(query.after, -1) + 1
    page = kept[start : start + query.size]
    more = start + query.size < len(kept)
    return {
        "rows": page,
        "total": len(kept),
        "offset": start,
        "next": page[-1][key] if more and page else None,
    }


def _with_form_filter(items: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The dashboard's filter form sends ``_filter_column``, ``_filter_op``, ``_filter_value``;
    they mean ``COLUMN__OP=VALUE``."""
    form = {k: v for k, v in items if k.startswith("_filter_")}
    rest = [(k, v) for k, v in items if not k.startswith("_filter_")]
    if form.get("_filter_column") and form.get("_filter_op") and form.get("_filter_value"):
        rest.append((f"{form['_filter_column']}__{form['_filter_op']}", form["_filter_value"]))
    return rest


def bool_value(text: str) -> bool:
    """``1``/``true`` or ``0``/``false`` (any case); anything else is no boolean: ``bool("0")``
    is true, so a filter ``dead__eq=0`` once showed the dead neurons only, silently."""
    lowered = text.strip().lower()
    if lowered in ("1", "true"):
        return True
    if lowered in ("0", "false"):
        return False
    raise ValueError(text)


def int_value(text: str) -> int:
    """A whole number in ASCII digits (``int`` also reads '١' as 1)."""
    if not text.isascii():
        raise ValueError(text)
    return int(text)


def float_value(text: str) -> float:
    """A finite number in ASCII (``float`` also reads '١' and 'nan')."""
    value = float(text) if text.isascii() else float("nan")
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(text)
    return value


PARSERS: dict[type, Callable[[str], Any]] = {bool: bool_value, int: int_value, float: float_value}
_NAMES = {
    bool_value: "boolean (0, 1, true or false)",
    int_value: "whole number",
    float_value: "number",
}


def _convert(key: str, value: str, parse: Callable[[str], Any]) -> Any:
    try:
        return parse(value)
    except ValueError:
        what = _NAMES.get(parse, parse.__name__)
        raise QueryError(f"{key}={value[:40]!r} is not a valid {what}") from None


def _bounded_int(key: str, value: str, low: int, high: int) -> int:
    number = _convert(key, value, int_value)
    if not low <= number <= high:
        raise QueryError(f"{key} must be between {low} and {high}")
    return number


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)
