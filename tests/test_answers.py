"""Answer extraction from paths and checking against gold answers."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lada.tasks.answers import (
    AnswerCheckConfig,
    check_answer,
    extract_answer,
    final_answer,
    format_number,
    is_correct,
    is_correct_final,
    normalize_numeric,
)
from lada.tasks.item import ANSWER_KINDS, ReasoningItem
from lada.tasks.prompts import gold_path, render_path


@pytest.mark.parametrize(
    ("path", "kind", "expected"),
    [
        (" 48 / 2 = 24\n24 + 48 = 72\n#### 72\n", "numeric", "72"),
        ("#### 1\nthen more\n#### 2\n", "numeric", "2"),
        ("#### 1,234.0", "numeric", "1234"),
        ("#### -$5.50", "numeric", "-5.5"),
        ("#### 25%", "numeric", "25"),
        ("The answer is 5.\n#### 6", "numeric", "6"),
        ("#### ???\nThe answer is 7", "numeric", "7"),
        ("The answer is 42.", "numeric", "42"),
        ("Final answer: $1,000 in total", "numeric", "1000"),
        ("we get \\boxed{3/4}", "numeric", "0.75"),
        ("so $\\boxed{\\frac{1}{2}}$", "numeric", "0.5"),
        ("3 apples and 4 pears, minus -7 gives -7", "numeric", "-7"),
        ("she pays $16.00.", "numeric", "16"),
        ("nothing to see", "numeric", None),
        ("The answer is (B).", "option", "B"),
        ("so the answer is b", "option", "B"),
        ("Answer: C) 12", "option", "C"),
        ("#### (d)", "option", "D"),
        ("#### a.", "option", "A"),  # a bare lower-case letter and nothing but punctuation after
        ("Answer: b) 12", "option", "B"),  # one bracket marks a lower-case letter as an option
        ("The answer is C because it is larger", "option", "C"),  # upper case needs no bracket
        ("The answer is a bit unclear", "option", None),
        ("nothing to see", "option", None),
        ("Answer: yes", "yesno", "yes"),
        ("Answer: False.", "yesno", "no"),
        ("#### No, because ...", "yesno", "no"),
        ("maybe", "yesno", None),
        ("#### Paris .\n", "text", "Paris"),
        ("#### Xerxes", "text", "Xerxes"),  # only spaces, dots and quotes are trimmed
        ("The answer is **Paris**.", "text", "Paris"),
        ("The answer is \\boxed{Paris}.", "text", "Paris"),
        ("The answer is $\\boxed{Paris}$", "text", "Paris"),
        ("#### \\fbox{Paris}", "text", "Paris"),
        ("The answer is $X+Y$", "text", "X+Y"),  # LaTeX delimiters come in pairs ...
        ("#### $5", "text", "$5"),  # ... a lone dollar is a currency sign
        ("#### 5$", "text", "5$"),
        ("#### (A) not \\boxed{B}", "option", "A"),  # only a box around the whole answer counts
        ("#### 12 apples\n3 left over", "numeric", "12"),  # the answer line's first number
        ("The answer is   New   York.", "text", "New York"),
        ("", "text", None),
    ],
)
def test_extract_answer(path: str, kind: str, expected: str | None) -> None:
    assert extract_answer(path, kind) == expected  # type: ignore[arg-type]


def test_extract_option_maps_choice_text_and_rejects_out_of_range_letters() -> None:
    choices = ("red", "blue")
    assert extract_answer("#### Blue", "option", choices) == "B"
    assert extract_answer("#### (E)", "option", choices) is None
    assert extract_answer("#### (E)", "option") == "E"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("16.0", 16.0),
        ("16", 16.0),
        ("1,234", 1234.0),
        ("1,234,567.5", 1234567.5),
        ("$5", 5.0),
        ("-$5", -5.0),
        ("50%", 50.0),
        ("42.", 42.0),
        ("-3", -3.0),
        (" 3/4 ", 0.75),
        ("-1/2", -0.5),
        ("\\frac{3}{4}", 0.75),
        ("\u22122", -2.0),
        ("2.5e3", 2500.0),
        ("abc", None),
        ("1/0", None),
        ("nan", None),
        ("inf", None),
        ("1e999", None),
        ("1,23", None),
        ("", None),
        ("12 apples", None),
        ("10X", None),
        ("3/4.", 0.75),  # a trailing period, also after a fraction or a percent
        ("50%.", 50.0),
        ("50\\%", 50.0),  # LaTeX's escaped percent
        ("- 5", -5.0),  # spaces inside are dropped
        ("$ 5", 5.0),
        (16, 16.0),  # numbers pass through; bools, None and non-finite values are no answer
        (2.5, 2.5),
        (True, None),
        (None, None),
        (float("inf"), None),
        (10**400, None),
    ],
)
def test_normalize_numeric(text: str | float | None, expected: float | None) -> None:
    assert normalize_numeric(text) == expected


@pytest.mark.parametrize(
    ("predicted", "gold", "kind", "expected"),
    [
        ("16", "16.0", "numeric", True),
        ("16.5", "16", "numeric", False),
        ("1,234", "1234", "numeric", True),
        ("1.0000001", "1", "numeric", True),
        ("1.001", "1", "numeric", False),
        ("0.75", "3/4", "numeric", True),
        ("(b)", "B", "option", True),
        ("B)", "b", "option", True),
        ("C", "B", "option", False),
        ("true", "yes", "yesno", True),
        ("no", "False", "yesno", True),
        ("yes", "no", "yesno", False),
        ("maybe", "yes", "yesno", False),
        ("  New   york. ", "new york", "text", True),
        ("Boston", "new york", "text", False),
        ("Xavier", "avier", "text", False),  # only spaces, dots and quotes are trimmed
        (None, "1", "numeric", False),
        (None, "A", "option", False),
        ("12 apples", "12", "numeric", True),  # the prediction's first number
        ("many", "5", "numeric", False),  # no number against a number
        ("five", "five", "numeric", True),  # a gold answer that is no number compares as text
        ("six", "five", "numeric", False),
    ],
)
def test_check_answer(predicted: str | None, gold: str, kind: str, expected: bool) -> None:
    assert check_answer(predicted, gold, kind) is expected  # type: ignore[arg-type]


def test_numeric_tolerance_is_configurable() -> None:
    loose = AnswerCheckConfig(numeric_abs_tol=0.2)
    assert not check_answer("1.1", "1", "numeric")
    assert check_answer("1.1", "1", "numeric", loose)
    relative = AnswerCheckConfig(numeric_rel_tol=0.1, numeric_abs_tol=0.0)
    assert not check_answer("105", "100", "numeric")
    assert check_answer("105", "100", "numeric", relative)
    assert not check_answer("0.5", "0", "numeric", relative)  # relative to 0 is nothing


def test_only_text_is_a_prediction() -> None:
    assert not check_answer(16, "16", "numeric")  # type: ignore[arg-type]
    assert extract_answer(None, "numeric") is None  # type: ignore[arg-type]
    assert final_answer(None, "numeric") is None  # type: ignore[arg-type]


def test_is_correct_checks_by_the_items_kind_and_the_given_tolerance() -> None:
    exact = ReasoningItem("n1", "math", "1 + 0.1?", "1.10", "numeric")
    assert is_correct("#### 1.1", exact)  # equal as numbers, not as text
    assert is_correct_final("#### 1.1", exact)
    near = ReasoningItem("n2", "math", "1 + 0?", "1", "numeric")
    loose = AnswerCheckConfig(numeric_abs_tol=0.2)
    assert not is_correct("#### 1.1", near)
    assert is_correct("#### 1.1", near, loose)
    assert not is_correct_final("#### 1.1", near)
    assert is_correct_final("#### 1.1", near, loose)


def _items() -> list[ReasoningItem]:
    return [
        ReasoningItem("n", "math", "2+2?", "4", "numeric", rationale="2 + 2 = 4"),
        ReasoningItem("o", "mc", "Pick", "B", "option", choices=("x", "y", "z")),
        ReasoningItem("y", "qa", "Is it?", "yes", "yesno", rationale="It is."),
        ReasoningItem("t", "qa", "Capital?", "Paris", "text"),
    ]


@pytest.mark.parametrize("item", _items(), ids=lambda item: item.answer_kind)
def test_is_correct_accepts_gold_path_and_rejects_wrong_answer(item: ReasoningItem) -> None:
    wrong = {"numeric": "5", "option": "C", "yesno": "no", "text": "Rome"}[item.answer_kind]
    assert is_correct(gold_path(item), item)
    assert not is_correct(render_path(item.rationale, wrong), item)
    assert not is_correct("", item)


@settings(max_examples=200, deadline=None)
@given(text=st.text(), kind=st.sampled_from(ANSWER_KINDS))
def test_extract_answer_never_raises(text: str, kind: str) -> None:
    result = extract_answer(text, kind)  # type: ignore[arg-type]
    assert result is None or isinstance(result, str)


@settings(max_examples=100, deadline=None)
@given(
    prefix=st.text(alphabet=st.characters(blacklist_characters="#"), max_size=40),
    number=st.integers(min_value=-(10**9), max_value=10**9),
)
def test_marker_line_wins_over_noise(prefix: str, number: int) -> None:
    path = prefix + "\n" + render_path("some steps", str(number))
    assert extract_answer(path, "numeric") == str(number)


@settings(max_examples=100, deadline=None)
@given(value=st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12))
def test_format_number_round_trips(value: float) -> None:
    parsed = normalize_numeric(format_number(value))
    assert parsed is not None
    assert math.isclose(parsed, value, rel_tol=1e-9, abs_tol=1e-9)


def test_strict_check_reads_only_the_answer_line() -> None:
    item = ReasoningItem("c", "chain_sum", "3 + 4 + 5 = ?", "12", "numeric")
    repeated_question = " 3 + 4 + 5 = ?\n3 + 4 = 7\n7 + 5 = 12"  # right number, no #### line
    assert is_correct(repeated_question, item)  # evaluation keeps its last-number fallback
    assert final_answer(repeated_question, "numeric") is None
    assert not is_correct_final(repeated_question, item)
    assert not is_correct_final("The answer is 12.", item)
    assert not is_correct_final("#### twelve\n12", item)
    assert is_correct_final(" 7 + 5 = 12\n#### 12\n", item)
    assert is_correct_final(gold_path(item), item)
    # the first answer line counts: generation stops right after it
    assert not is_correct_final("#### 13\n#### 12\n", item)


def test_option_letter_beyond_the_choices_is_no_answer() -> None:
    item = ReasoningItem("o2", "mc", "Pick", "A", "option", choices=("3", "5"))
    assert extract_answer("#### (C)\n", "option", item.choices) is None
    assert final_answer("#### (C)\n", "option", item.choices) is None
    assert not is_correct("#### (C)\n", item) and not is_correct_final("#### (C)\n", item)
    # a letter past the choices on the answer line is not rescued by an earlier phrase
    hedged = "Answer: (A)\n#### (C)\n"
    assert is_correct(hedged, item)
    assert not is_correct_final(hedged, item)
    assert is_correct_final("#### (A)\n", item)
    assert is_correct_final("#### 3\n", item)  # the choice's text maps to its letter
    # the last letter inside the choices is an answer: the boundary sits between B and C
    assert extract_answer("#### (B)\n", "option", item.choices) == "B"
    assert final_answer("#### (B)\n", "option", item.choices) == "B"
