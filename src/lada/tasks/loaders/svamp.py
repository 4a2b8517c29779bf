"""SVAMP rows: `Body` + `Question`, an `Equation` and a numeric `Answer`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lada.tasks.answers import format_number
from lada.tasks.item import ReasoningItem
from lada.tasks.loaders.fields import RowPlace, make_item, number_field, text_field


def parse_svamp_row(row: Mapping[str, Any], place: RowPlace) -> ReasoningItem:
    """SVAMP: `Body` + `Question`, `Equation` rendered as the rationale, numeric `Answer`."""
    body = text_field(row, "Body", place, required=False)
    question = text_field(row, "Question", place)
    equation = text_field(row, "Equation", place, required=False)
    value = number_field(row, "Answer", place)
    answer = format_number(value)
    rationale = f"{' '.join(equation.split())} = {answer}" if equation.strip() else ""
    meta = {key: row[key] for key in ("ID", "Type") if isinstance(row.get(key), str | int)}
    return make_item(
        place,
        row,
        question=f"{body.strip()} {question.strip()}".strip(),
        answer=answer,
        answer_kind="numeric",
        rationale=rationale,
        meta=meta,
    )
