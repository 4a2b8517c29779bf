"""The row formats by name: the one place a new format is registered.

`ROW_PARSERS` maps each name in `RowFormat` to its parser; `detect_row_format` is how
`format="auto"` recognises a format from a record's field names (first rule that fits wins).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

from lada.tasks.loaders.bigbench import parse_bigbench_row
from lada.tasks.loaders.fields import RowParser
from lada.tasks.loaders.gsm8k import parse_gsm8k_row
from lada.tasks.loaders.multiple_choice import parse_mc_row
from lada.tasks.loaders.svamp import parse_svamp_row

RowFormat = Literal["gsm8k", "svamp", "mc", "bigbench"]
FileFormat = Literal["auto", RowFormat]
ROW_FORMATS: tuple[str, ...] = get_args(RowFormat)

ROW_PARSERS: dict[str, RowParser] = {
    "gsm8k": parse_gsm8k_row,
    "svamp": parse_svamp_row,
    "mc": parse_mc_row,
    "bigbench": parse_bigbench_row,
}


def detect_row_format(row: Mapping[str, Any]) -> str | None:
    """The row format a record's field names point to, or None when they fit none."""
    keys = set(row)
    if {"Body", "Question", "Answer"} <= keys:
        return "svamp"
    if "input" in keys and keys & {"target_scores", "target"}:
        return "bigbench"
    if keys & {"choices", "options", "answerKey", "correct"}:
        return "mc"
    if "question" in keys and "answer" in keys:
        return "gsm8k"
    return None
