"""What every row parser shares: where a row came from, what a load returns, and field readers.

The field readers raise `DataFormatError` through `RowPlace.error`, so every format names file,
line and field the same way for the same kind of problem.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lada.tasks.answers import normalize_numeric
from lada.tasks.errors import DataFormatError
from lada.tasks.item import ReasoningItem


@dataclass(frozen=True)
class RowPlace:
    """Where a row came from, and the defaults it inherits from its file."""

    file: str
    line: int
    source: str
    domain: str

    def error(self, field_name: str, problem: str) -> DataFormatError:
        return DataFormatError(self.file, self.line, field_name, problem)

    @property
    def item_id(self) -> str:
        return f"{self.source}:{self.line}"


@dataclass
class LoadResult:
    """Items read from one source, the bad rows skipped on the way, and the row format used."""

    items: list[ReasoningItem]
    skipped: list[DataFormatError] = field(default_factory=list)
    format: str = ""


# A row parser: one record and its place in, one item out, or a DataFormatError raised.
RowParser = Callable[[Mapping[str, Any], RowPlace], ReasoningItem]


def make_item(place: RowPlace, row: Mapping[str, Any], **fields: Any) -> ReasoningItem:
    """The item for a row; the item's own checks come back as errors at this row's place."""
    domain = row.get("domain")
    try:
        return ReasoningItem(
            id=place.item_id,
            domain=domain.strip() if isinstance(domain, str) and domain.strip() else place.domain,
            source=place.source,
            **fields,
        )
    except ValueError as error:  # the item's own checks: "field: problem"
        field_name, _, problem = str(error).partition(": ")
        raise place.error(field_name, problem or str(error)) from None


def text_field(row: Mapping[str, Any], name: str, place: RowPlace, *, required: bool = True) -> str:
    """A text field; when not `required`, a missing one reads as empty."""
    value = row.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise place.error(name, missing_or_type(value, "text"))
    if required and not value.strip():
        raise place.error(name, "empty")
    return value


def number_field(row: Mapping[str, Any], name: str, place: RowPlace) -> float:
    """A numeric field in canonical float form (booleans are not numbers)."""
    value = row.get(name)
    if value is None:
        raise place.error(name, "missing")
    number = None if isinstance(value, bool) else normalize_numeric(value)
    if number is None:
        raise place.error(name, f"not a number: {value!r}")
    return number


def missing_or_type(value: Any, expected: str) -> str:
    """The problem with a value that is not the expected kind, in words."""
    if value is None:
        return "missing"
    return f"expected {expected}, got {json_type(value)}"


def json_type(value: Any) -> str:
    """A value's JSON type name, for messages about the file rather than Python."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    for kind, label in names.items():
        if isinstance(value, kind):
            return label
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def first_present(row: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    """The first of `names` the row has a non-null value for."""
    return next((name for name in names if row.get(name) is not None), None)


def clean_lines(text: str) -> str:
    """Text with each line stripped and blank lines dropped."""
    return "\n".join(line.strip() for line in text.strip().splitlines() if line.strip())
