"""GSM8K rows: a question and a worked solution ending in `#### <number>`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from lada.tasks.answers import format_number, normalize_numeric
from lada.tasks.item import ReasoningItem
from lada.tasks.loaders.fields import RowPlace, clean_lines, make_item, text_field
from lada.tasks.prompts import ANSWER_MARKER

_GSM8K_FINAL = re.compile(r"^[ \t]*" + re.escape(ANSWER_MARKER) + r"[ \t]*(.*?)[ \t]*$", re.M)
_CALCULATOR_NOTE = re.compile(r"<<[^<>\n]*>>")


def parse_gsm8k_row(row: Mapping[str, Any], place: RowPlace) -> ReasoningItem:
    """GSM8K: `question`, and `answer` = worked solution ending in a `#### <number>` line.

    Calculator notes `<<48/2=24>>` are removed from the rationale; the answer is stored in
    canonical form (commas removed, no trailing `.0`).
    """
    question = text_field(row, "question", place)
    solution = text_field(row, "answer", place)
    finals = list(_GSM8K_FINAL.finditer(solution))
    if not finals:
        raise place.error("answer", f"no '{ANSWER_MARKER} <number>' line")
    final = finals[-1]
    value = normalize_numeric(final.group(1))
    if value is None:
        raise place.error("answer", f"not a number after '{ANSWER_MARKER}': {final.group(1)!r}")
    rationale = _CALCULATOR_NOTE.sub("", solution[: final.start()])
    return make_item(
        place,
        row,
        question=question,
        answer=format_number(value),
        answer_kind="numeric",
        rationale=clean_lines(rationale),
    )
