"""Text normalisation for the tiny tokenizers: each replacement, idempotence, checkable answers."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lada.models.tokenizer import CHAR_ALPHABET, build_char_tokenizer
from lada.tasks.answers import check_answer, is_correct_final
from lada.tasks.item import ReasoningItem
from lada.tasks.normalize import (
    TYPOGRAPHIC,
    NormalizationError,
    normalize_item,
    normalize_items,
    normalize_text,
)
from lada.tasks.prompts import gold_path

ASCII = frozenset(CHAR_ALPHABET)


def norm(text: str, placeholder: str = "?") -> str:
    return normalize_text(text, CHAR_ALPHABET, placeholder)


@pytest.mark.parametrize(
    ("char", "plain"), sorted(TYPOGRAPHIC.items()), ids=lambda v: f"U+{ord(v[0]):04X}" if v else ""
)
def test_each_typographic_replacement(char: str, plain: str) -> None:
    assert norm(f"a{char}b") == f"a{plain}b"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3 \u00d7 4 \u2013 2 = 10", "3 * 4 - 2 = 10"),  # multiplication sign, en dash
        ("\u201cyes\u201d, it\u2019s", '"yes", it\'s'),  # curly quotes
        ("12\u00a0apples and 3\u2009pears", "12 apples and 3 pears"),  # non-breaking, thin
        ("wait\u2026", "wait..."),  # ellipsis
        ("8 \u00f7 2", "8 / 2"),  # division sign
        ("\u22123 + 5", "-3 + 5"),  # minus sign
        ("a \u2014 b", "a - b"),  # em dash
        ("x \u2264 y", "x <= y"),
        ("\ufb01ne \uff22", "fine B"),  # NFKC: ligature, full-width letter
        ("5\u00b2 = 25", "5^2 = 25"),  # superscript kept as a power, not 52
        ("3\u00bd cups", "3 1/2 cups"),  # a mixed number stays readable, not 31/2
        ("caf\u00e9 na\u00efve Zo\u00eb", "cafe naive Zoe"),  # accents dropped
        ("\u0663\u0664", "34"),  # digits of another script
        ("line\r\nnext\tcol", "line\nnext col"),
        ("zero\u200bwidth", "zerowidth"),
        ("q\u0303", "q"),  # a combining accent with no precomposed letter
    ],
)
def test_normalisation_examples(text: str, expected: str) -> None:
    assert norm(text) == expected


def test_what_has_no_plain_form_becomes_the_placeholder_and_is_counted() -> None:
    unmapped: Counter[str] = Counter()
    assert normalize_text("\u20ac5 or \u65e5", CHAR_ALPHABET, "?", unmapped) == "?5 or ?"
    assert unmapped == Counter({"\u20ac": 1, "\u65e5": 1})
    assert normalize_text("\u20ac5", CHAR_ALPHABET, "") == "5"  # an empty placeholder removes
    with pytest.raises(ValueError, match="placeholder"):
        normalize_text("\u20ac5", CHAR_ALPHABET, "\u00a4")


def test_text_inside_the_alphabet_is_unchanged() -> None:
    text = "Q: What is 3 + 4?\n#### 7 (A) 'x' \"y\" ~ ^ | \\ {}"
    assert norm(text) is text


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_normalising_is_idempotent_and_stays_inside_the_alphabet(text: str) -> None:
    once = norm(text)
    assert set(once) <= ASCII
    assert norm(once) == once
    tokenizer = build_char_tokenizer()
    assert tokenizer.unk_token_id not in tokenizer(once, add_special_tokens=False)["input_ids"]


def _item(**fields) -> ReasoningItem:
    base = dict(id="own:1", domain="math", question="What is 3 \u00d7 4?", answer="12")
    base.update(answer_kind="numeric", rationale="3 \u00d7 4 = 12")
    base.update(fields)
    return ReasoningItem(**base)  # type: ignore[arg-type]


def test_every_field_is_normalised_and_counted() -> None:
    item = _item(
        question="Which is it \u2013 \u201cA\u201d?",
        answer="B",
        answer_kind="option",
        rationale="It\u2019s the second\u00a0one\u2026",
        choices=("caf\u00e9", "cr\u00eape", "\u20ac"),
    )
    plain = _item(id="own:2", question="plain?", rationale="")
    items, report = normalize_items([item, plain], ASCII)
    first, second = items
    assert first.question == 'Which is it - "A"?'
    assert first.rationale == "It's the second one..."
    assert first.choices == ("cafe", "crepe", "?")
    assert first.answer == "B" and first.id == item.id and first.domain == item.domain
    assert second is plain and report.items == 2 and report.items_changed == 1
    assert report.fields_changed == 5  # question, rationale and three choices
    assert report.rewritten["\u2013"] == 1 and report.rewritten["\u2019"] == 1
    assert report.unmapped == Counter({"\u20ac": 1})
    line = report.describe()
    assert "1 of 2 items" in line and "'\u20ac' x1" in line and "'?'" in line
    assert report.to_dict()["unmapped"] == {"\u20ac": 1}


def test_an_unchanged_item_is_returned_as_is() -> None:
    item = _item(question="What is 3 * 4?", rationale="3 * 4 = 12")
    assert normalize_item(item, ASCII) is item


@pytest.mark.parametrize(
    ("item", "answer"),
    [
        (_item(answer="\u22125", rationale="3 \u2212 8 = \u22125"), "-5"),  # minus sign
        (_item(answer="\uff11\uff12"), "12"),  # full-width digits
        (_item(answer="\u0661\u0662"), "12"),  # Arabic-Indic digits
        (
            _item(
                answer="na\u00efve", answer_kind="text", rationale="It is \u201cna\u00efve\u201d."
            ),
            "naive",
        ),
        (_item(answer="C", answer_kind="option", choices=("\u00bd", "\u00bc", "\u00be")), "C"),
    ],
    ids=["minus", "full-width", "arabic-indic", "text", "option"],
)
def test_a_changed_item_keeps_its_answer_checkable(item: ReasoningItem, answer: str) -> None:
    normalised = normalize_item(item, ASCII)
    assert normalised is not item and normalised.answer == answer
    assert is_correct_final(gold_path(normalised), normalised)
    if item.answer_kind != "text":  # the same number or letter as the original answer
        assert check_answer(normalised.answer, item.answer, item.answer_kind)


def test_a_replacement_that_would_break_the_answer_is_refused(monkeypatch) -> None:
    monkeypatch.setitem(TYPOGRAPHIC, "\u2212", "~")  # a careless table entry
    item = _item(answer="\u22123", rationale="1 \u2212 4 = \u22123")
    assert is_correct_final(gold_path(item), item)
    with pytest.raises(NormalizationError, match="own:1"):
        normalize_item(item, ASCII)


def test_an_answer_normalised_to_nothing_is_an_error_naming_the_item() -> None:
    item = _item(answer="\u20ac", answer_kind="text")
    with pytest.raises(NormalizationError, match="own:1.*answer"):
        normalize_item(item, ASCII, placeholder="")
