"""Reading the final answer out of a reasoning path and checking it against the gold answer.

Every model in `lada` is trained to end its path with `#### <answer>` (see `lada.tasks.prompts`),
so that line is read first. Untrained or foreign models phrase answers freely, hence the
fallbacks ("the answer is (B)", "Answer: yes", `\\boxed{42}`, and for numbers the last number in
the text). Extraction never raises: a path with no readable answer gives None, which is simply
wrong, never a crash in the middle of an evaluation.

Two checks use it. `is_correct` (evaluation accuracy) keeps every fallback. `is_correct_final`
(which paths may serve as training positives) reads the `####` line only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence

from pydantic import BaseModel, ConfigDict, Field

from lada.tasks.item import AnswerKind, ReasoningItem
from lada.tasks.prompts import ANSWER_MARKER, OPTION_LETTERS


class AnswerCheckConfig(BaseModel):
    """How close a predicted number must be to the gold number to count as correct."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    numeric_rel_tol: float = Field(
        1e-6, ge=0, description="Relative tolerance for numeric answers (math.isclose rel_tol)."
    )
    numeric_abs_tol: float = Field(
        1e-6, ge=0, description="Absolute tolerance for numeric answers (math.isclose abs_tol)."
    )


DEFAULT_CHECK = AnswerCheckConfig()

# A whole-string number: thousands-separated or plain digits, optional decimals and exponent.
_NUMBER_FULL = re.compile(r"[-+]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_FRACTION_FULL = re.compile(r"([-+]?\d+)\s*/\s*(\d+)")
_LATEX_FRACTION = re.compile(r"^([-+]?)\\[dt]?frac\{\s*(\d+)\s*\}\{\s*(\d+)\s*\}$")
# A number inside running text; a minus sign counts only when it does not follow a word or digit.
_NUMBER_IN_TEXT = re.compile(
    r"(?:(?<![\w)])-)?\$?(?:\d{1,3}(?:,\d{3})+(?![\d])|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?"
)
_MARKER_CONTENT = re.compile(re.escape(ANSWER_MARKER) + r"[ \t]*([^\n]*)")
_ANSWER_PHRASE = re.compile(r"\banswer\s*(?:is|:|=)\s*:?[ \t]*([^\n]+)", re.IGNORECASE)
_BOXED_OPEN = re.compile(r"\\(?:boxed|fbox)\s*\{")
_OPTION = re.compile(r"^(?:(?:option|choice)\s+)?([(\[]?)([A-Ja-j])([)\]]?)(?![\w])", re.IGNORECASE)
_YES_NO = re.compile(r"^\W*(yes|no|true|false)\b", re.IGNORECASE)
_YES_NO_VALUE = {"yes": "yes", "true": "yes", "no": "no", "false": "no"}


def format_number(value: float) -> str:
    """A number as text without a spurious `.0`: 16.0 -> "16", 0.75 -> "0.75"."""
    if value.is_integer():
        return str(int(value))
    return f"{value:.12g}"


def normalize_numeric(text: str | float | int | None) -> float | None:
    """The number a short answer string stands for, or None when it is not exactly one number.

    Tolerates `16.0`, `1,234`, `$5`, `25%`, a trailing period, `-3`, `3/4`, `\\frac{3}{4}` and a
    surrounding `\\boxed{}` or `$...$`. Text with words around the number gives None (use
    `extract_answer` to find a number inside a sentence).
    """
    if isinstance(text, bool) or text is None:
        return None
    if isinstance(text, int | float):
        try:
            value = float(text)
        except OverflowError:  # an int beyond the float range is no usable number
            return None
        return value if math.isfinite(value) else None
    if not isinstance(text, str):
        return None
    cleaned = _strip_decoration(text).replace("\u2212", "-").replace(" ", "")
    cleaned = cleaned.rstrip(".")
    cleaned = cleaned.removesuffix("\\%").removesuffix("%")
    cleaned = re.sub(r"^([-+]?)\$", r"\1", cleaned)
    if not cleaned:
        return None
    latex = _LATEX_FRACTION.match(cleaned)
    if latex:
        cleaned = f"{latex.group(1)}{latex.group(2)}/{latex.group(3)}"
    fraction = _FRACTION_FULL.fullmatch(cleaned)
    if fraction:
        try:  # int() refuses over 4300 digits; the quotient may not fit a float
            numerator, denominator = int(fraction.group(1)), int(fraction.group(2))
            value = numerator / denominator if denominator else math.nan
        except (ValueError, OverflowError):
            return None
        return value if math.isfinite(value) else None
    if not _NUMBER_FULL.fullmatch(cleaned):
        return None
    try:
        value = float(cleaned.replace(",", ""))
    except (ValueError, OverflowError):
        return None
    return value if math.isfinite(value) else None


def extract_answer(path: str, kind: AnswerKind, choices: Sequence[str] = ()) -> str | None:
    """The normalised final answer a path states, or None when it states none.

    Candidates, in order: the last `#### ...` line (the project's format), the last
    "answer is ..." / "Answer: ..." phrase, the last `\\boxed{...}`; for numeric answers finally
    the last number anywhere in the text. The result is normalised per kind: numbers via
    `format_number`, options as an upper-case letter, yes/no as "yes"/"no", text with collapsed
    whitespace. `choices` lets an option answer given as the choice's text map to its letter.
    """
    if not isinstance(path, str):
        return None
    for candidate in _candidates(path):
        value = _normalize_candidate(candidate, kind, choices)
        if value is not None:
            return value
    if kind == "numeric":
        numbers = _NUMBER_IN_TEXT.findall(path)
        for number in reversed(numbers):
            parsed = normalize_numeric(number)
            if parsed is not None:
                return format_number(parsed)
    return None


def check_answer(
    predicted: str | None,
    gold: str,
    kind: AnswerKind,
    config: AnswerCheckConfig = DEFAULT_CHECK,
) -> bool:
    """Whether a predicted answer matches the gold answer for this answer kind.

    numeric: equal within `config` tolerances (`16.0` == `16`, `1,234` == `1234`); option: same
    letter (`(b)`, `B)`, `b`); yes/no: same truth value (`true` == `yes`); text: equal ignoring
    case and whitespace. A missing prediction is never correct.
    """
    if predicted is None or not isinstance(predicted, str):
        return False
    if kind == "numeric":
        predicted_value = _leading_number(predicted)
        gold_value = normalize_numeric(gold)
        if predicted_value is None or gold_value is None:
            return gold_value is None and _text_key(predicted) == _text_key(gold)
        return math.isclose(
            predicted_value,
            gold_value,
            rel_tol=config.numeric_rel_tol,
            abs_tol=config.numeric_abs_tol,
        )
    if kind == "option":
        letter = _option_letter(predicted, ())
        return letter is not None and letter == _option_letter(gold, ())
    if kind == "yesno":
        truth = _yes_no(predicted)
        return truth is not None and truth == _yes_no(gold)
    key = _text_key(predicted)
    return bool(key) and key == _text_key(gold)


def is_correct(path: str, item: ReasoningItem, config: AnswerCheckConfig = DEFAULT_CHECK) -> bool:
    """Whether a path states the item's gold answer, read leniently (for evaluation accuracy).

    Uses `extract_answer` with all its fallbacks, because foreign and untrained models phrase
    answers freely and an evaluation should credit a stated answer however it is written. The
    last-number fallback also credits a path that merely repeats the question ending in the right
    number, so this is not the check for choosing training positives: see `is_correct_final`.
    """
    predicted = extract_answer(path, item.answer_kind, item.choices)
    return check_answer(predicted, item.answer, item.answer_kind, config)


def final_answer(path: str, kind: AnswerKind, choices: Sequence[str] = ()) -> str | None:
    """The normalised answer on the path's first `#### ...` line only, or None without one.

    No fallbacks: a path without the answer line, or whose line holds no readable answer of this
    kind (an option letter beyond `choices`, words for a number), states no final answer. The
    first line counts because generation stops right after it (`lada.models.wrapper`).
    """
    if not isinstance(path, str):
        return None
    line = _MARKER_CONTENT.search(path)
    return None if line is None else _normalize_candidate(line.group(1), kind, choices)


def is_correct_final(
    path: str, item: ReasoningItem, config: AnswerCheckConfig = DEFAULT_CHECK
) -> bool:
    """Whether the path's final-answer line (`#### <answer>`) states the gold answer.

    The strict check for training positives: a path that never writes its answer line is not
    a demonstration of the format every model here learns, even when the right number appears
    elsewhere in it (a repeated question such as ` 3 + 4 + 5 = ?` ending in the sum would pass
    `is_correct`).
    """
    predicted = final_answer(path, item.answer_kind, item.choices)
    return check_answer(predicted, item.answer, item.answer_kind, config)


def _candidates(path: str) -> Iterator[str]:
    markers = _MARKER_CONTENT.findall(path)
    if markers:
        yield markers[-1]
    phrases = _ANSWER_PHRASE.findall(path)
    if phrases:
        yield phrases[-1]
    boxed = _last_boxed(path)
    if boxed is not None:
        yield boxed


def _normalize_candidate(candidate: str, kind: AnswerKind, choices: Sequence[str]) -> str | None:
    text = _strip_decoration(candidate)
    if not text:
        return None
    if kind == "numeric":
        value = _leading_number(text)
        return None if value is None else format_number(value)
    if kind == "option":
        return _option_letter(text, choices)
    if kind == "yesno":
        return _yes_no(text)
    cleaned = " ".join(text.split()).strip(" .\"'`")
    return cleaned or None


def _leading_number(text: str) -> float | None:
    """The number a candidate states: the whole text if it is one, else its first number."""
    value = normalize_numeric(text)
    if value is not None:
        return value
    for number in _NUMBER_IN_TEXT.findall(_strip_decoration(text)):
        value = normalize_numeric(number)
        if value is not None:
            return value
    return None


def _option_letter(text: str, choices: Sequence[str]) -> str | None:
    stripped = _strip_decoration(text)
    match = _OPTION.match(stripped)
    if match:
        opening, letter, closing = match.groups()
        rest = stripped[match.end() :].strip(" .,:;")
        # A bare lower-case "a" at the start of a sentence is an article, not option A.
        if letter.isupper() or opening or closing or not rest:
            index = OPTION_LETTERS.index(letter.upper())
            if not choices or index < len(choices):
                return letter.upper()
    if choices:
        key = _text_key(stripped)
        for index, choice in enumerate(choices[: len(OPTION_LETTERS)]):
            if key and key == _text_key(choice):
                return OPTION_LETTERS[index]
    return None


def _yes_no(text: str) -> str | None:
    match = _YES_NO.match(_strip_decoration(text))
    return _YES_NO_VALUE[match.group(1).lower()] if match else None


def _text_key(text: str) -> str:
    return " ".join(_strip_decoration(text).split()).strip(" .\"'`").casefold()


def _strip_decoration(text: str) -> str:
    """Drop markdown bold, LaTeX `$` delimiters and a surrounding `\\boxed{}`."""
    stripped = text.strip().replace("**", "")
    boxed = _last_boxed(stripped)
    if boxed is not None and stripped.lstrip("$ ").startswith(("\\boxed", "\\fbox")):
        stripped = boxed.strip()
    if len(stripped) >= 2 and stripped.startswith("$") and stripped.endswith("$"):
        inner = stripped.strip("$").strip()
        if inner:
            stripped = inner
    return stripped.strip()


def _last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` with balanced braces, or None."""
    opens = list(_BOXED_OPEN.finditer(text))
    for opening in reversed(opens):
        depth = 1
        for position in range(opening.end(), len(text)):
            if text[position] == "{":
                depth += 1
            elif text[position] == "}":
                depth -= 1
                if depth == 0:
                    return text[opening.end() : position]
    return None
