"""Multiple-choice rows (CommonsenseQA, ARC, MathQA style): question, options, correct option.

The option layouts and answer spellings differ by data set; they all end as option texts and the
letter of the correct one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from lada.tasks.item import ReasoningItem
from lada.tasks.loaders.fields import (
    RowPlace,
    clean_lines,
    first_present,
    json_type,
    make_item,
    missing_or_type,
    text_field,
)
from lada.tasks.prompts import OPTION_LETTERS


def parse_mc_row(row: Mapping[str, Any], place: RowPlace) -> ReasoningItem:
    """Multiple choice: a question, its options and the correct option.

    Question: `question` (text, or CommonsenseQA's `{"stem", "choices"}`), `Problem`, `stem`.
    Options: `choices` as a list of strings, `{"label": [...], "text": [...]}` or a list of
    `{"label", "text"}`; or MathQA's `options` string `"a ) 5 , b ) 6 , ..."` (or list).
    Correct option: `answer` / `answerKey` / `correct` as a label (`"B"`, `"b"`, `"(b)"`), the
    option text itself, or an integer 0-based index. Rationale: `rationale` / `explanation` /
    `Rationale`. The answer is stored as the option letter A, B, ...
    """
    question_name = first_present(row, ("question", "Problem", "problem", "stem")) or "question"
    raw_question = row.get(question_name)
    nested_choices: Any = None
    if isinstance(raw_question, Mapping):
        nested_choices = raw_question.get("choices")
        raw_question = raw_question.get("stem")
        question_name = f"{question_name}.stem"
    if not isinstance(raw_question, str) or not raw_question.strip():
        raise place.error(question_name, missing_or_type(raw_question, "text"))

    labels, texts = _choices(row, nested_choices, place)
    answer_name = first_present(row, ("answer", "answerKey", "correct")) or "answer"
    index = _answer_index(row.get(answer_name), labels, texts, answer_name, place)
    rationale_name = first_present(row, ("rationale", "explanation", "Rationale"))
    rationale = ""
    if rationale_name is not None:
        rationale = text_field(row, rationale_name, place, required=False).strip().strip('"')
    return make_item(
        place,
        row,
        question=raw_question.strip(),
        answer=OPTION_LETTERS[index],
        answer_kind="option",
        rationale=clean_lines(rationale),
        choices=tuple(texts),
    )


def _choices(row: Mapping[str, Any], nested: Any, place: RowPlace) -> tuple[list[str], list[str]]:
    """Option labels and texts from whichever layout the row uses."""
    name = first_present(row, ("choices", "options"))
    raw = row.get(name) if name is not None else nested
    field_name = name or "choices"
    if raw is None:
        raise place.error(field_name, "missing")
    labels: list[Any]
    texts: list[Any]
    if isinstance(raw, str):
        parsed = _parse_option_string(raw)
        if parsed is None:
            raise place.error(field_name, f"cannot read options from {raw[:60]!r}")
        labels, texts = parsed
    elif isinstance(raw, Mapping):
        label_list, text_list = raw.get("label"), raw.get("text")
        if not isinstance(label_list, list) or not isinstance(text_list, list):
            raise place.error(field_name, "expected lists under 'label' and 'text'")
        labels, texts = label_list, text_list
        if len(labels) != len(texts):
            raise place.error(field_name, f"{len(labels)} labels but {len(texts)} texts")
    elif isinstance(raw, list) and all(isinstance(entry, Mapping) for entry in raw) and raw:
        labels = [entry.get("label") for entry in raw]
        texts = [entry.get("text") for entry in raw]
    elif isinstance(raw, list):
        texts = [
            _strip_option_prefix(entry, OPTION_LETTERS[index % len(OPTION_LETTERS)])
            for index, entry in enumerate(raw)
        ]
        labels = list(OPTION_LETTERS[: len(texts)])
    else:
        raise place.error(field_name, f"expected a list or object, got {json_type(raw)}")
    if not 2 <= len(texts) <= len(OPTION_LETTERS):
        raise place.error(field_name, f"{len(texts)} options, need 2 to {len(OPTION_LETTERS)}")
    for index, (label, text) in enumerate(zip(labels, texts, strict=True)):
        if not isinstance(text, str) or not text.strip():
            raise place.error(field_name, f"option {index + 1} is not non-empty text")
        if not isinstance(label, str | int) or isinstance(label, bool):
            raise place.error(field_name, f"option {index + 1} has no label")
    return [str(label).strip() for label in labels], [str(text).strip() for text in texts]


def _strip_option_prefix(entry: Any, letter: str) -> Any:
    if not isinstance(entry, str):
        return entry
    return re.sub(rf"^\s*\(?{letter}\s*\)\s*", "", entry, flags=re.IGNORECASE)


def _parse_option_string(text: str) -> tuple[list[str], list[str]] | None:
    """MathQA's `"a ) 38 , b ) 27.675 , c ) 30"` as (labels, texts); None if unreadable."""
    starts: list[tuple[str, int, int]] = []
    position = 0
    for letter in OPTION_LETTERS.lower():
        anchor = r"^\s*" if not starts else r",\s*"
        match = re.compile(anchor + rf"\(?{letter}\s*\)", re.IGNORECASE).search(text, position)
        if match is None:
            break
        starts.append((letter.upper(), match.start(), match.end()))
        position = match.end()
    if not starts:
        return None
    labels, texts = [], []
    for index, (label, _, content_start) in enumerate(starts):
        content_end = starts[index + 1][1] if index + 1 < len(starts) else len(text)
        labels.append(label)
        texts.append(text[content_start:content_end].strip(" ,"))
    return labels, texts


def _answer_index(
    value: Any, labels: list[str], texts: list[str], name: str, place: RowPlace
) -> int:
    if value is None:
        raise place.error(name, "missing")
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < len(texts):
            return value
        raise place.error(name, f"index {value} out of range 0..{len(texts) - 1}")
    if not isinstance(value, str):
        raise place.error(name, f"expected an option label, got {json_type(value)}")
    key = value.strip().strip("().:").strip().casefold()
    for index, label in enumerate(labels):
        if key == label.casefold():
            return index
    for index, text in enumerate(texts):
        if value.strip().casefold() == text.casefold():
            return index
    raise place.error(name, f"{value!r} is not one of the option labels {', '.join(labels)}")
