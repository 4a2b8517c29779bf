"""BIG-bench examples: `input`, and `target_scores` and/or `target`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from lada.tasks.item import ReasoningItem
from lada.tasks.loaders.fields import RowPlace, clean_lines, make_item, text_field
from lada.tasks.prompts import OPTION_LETTERS


def parse_bigbench_row(row: Mapping[str, Any], place: RowPlace) -> ReasoningItem:
    """BIG-bench example: `input`, and `target_scores` (best key wins) and/or `target`.

    Yes/No targets give a yes/no item; other `target_scores` keys become options; a lone
    non-yes/no `target` gives a text answer. When `target` restates the answer followed by an
    explanation (StrategyQA: "Yes. Hydrogen ..."), the explanation becomes the rationale.
    """
    question = text_field(row, "input", place).strip()
    question = re.sub(r"^Q:\s*", "", question)
    question = re.sub(r"\s*\bA:\s*$", "", question).strip()
    target = _bigbench_target(row, place)
    scores = row.get("target_scores")
    if scores is None and target is None:
        raise place.error("target_scores", "missing (need 'target_scores' or 'target')")
    if scores is not None:
        keys, best = _best_target(scores, place)
        if {_yes_no_word(key) for key in keys} == {"yes", "no"}:
            answer = _yes_no_word(keys[best]) or ""
            return make_item(
                place,
                row,
                question=question,
                answer=answer,
                answer_kind="yesno",
                rationale=_explanation_after(target, answer),
            )
        if len(keys) > len(OPTION_LETTERS):
            raise place.error(
                "target_scores", f"{len(keys)} options, at most {len(OPTION_LETTERS)} supported"
            )
        return make_item(
            place,
            row,
            question=question,
            answer=OPTION_LETTERS[best],
            answer_kind="option",
            choices=tuple(keys),
        )
    assert target is not None
    word = _yes_no_word(target.split(maxsplit=1)[0]) if target.split() else None
    if word is not None:
        return make_item(
            place,
            row,
            question=question,
            answer=word,
            answer_kind="yesno",
            rationale=_explanation_after(target, word),
        )
    return make_item(place, row, question=question, answer=target.strip(), answer_kind="text")


def _bigbench_target(row: Mapping[str, Any], place: RowPlace) -> str | None:
    target = row.get("target")
    if isinstance(target, list):
        target = target[0] if target else None
    if target is None:
        return None
    if not isinstance(target, str) or not target.strip():
        raise place.error("target", "expected non-empty text or a list of texts")
    return target.strip()


def _best_target(scores: Any, place: RowPlace) -> tuple[list[str], int]:
    if not isinstance(scores, Mapping) or len(scores) < 2:
        raise place.error("target_scores", "expected an object with at least two targets")
    keys = [str(key).strip() for key in scores]
    values = list(scores.values())
    for key, value in zip(keys, values, strict=True):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise place.error("target_scores", f"score of {key!r} is not a number: {value!r}")
        if not key:
            raise place.error("target_scores", "empty target")
    best_score = max(values)
    best = [index for index, value in enumerate(values) if value == best_score]
    if len(best) != 1:
        raise place.error("target_scores", f"no single best target (tie at {best_score})")
    return keys, best[0]


def _yes_no_word(text: str) -> str | None:
    word = text.strip().rstrip(".!,").strip().casefold()
    return word if word in ("yes", "no") else None


def _explanation_after(target: str | None, answer: str) -> str:
    """The explanation in a target like "Yes. Because ..." (empty when there is none)."""
    if not target:
        return ""
    match = re.match(rf"^\s*{re.escape(answer)}\b[.!,:]?\s*", target, re.IGNORECASE)
    return clean_lines(target[match.end() :]) if match else ""
