"""The correctness gate: which path is positive, and how each case is counted."""

from __future__ import annotations

import pytest

from lada.method.config import LadaConfig
from lada.method.pairs import build_pairs
from lada.tasks.item import ReasoningItem
from lada.tasks.prompts import gold_path, render_path, render_prompt


def _item(index: int, answer: int) -> ReasoningItem:
    return ReasoningItem(
        id=f"q{index}",
        domain="add",
        question=f"What is {answer - 1} + 1?",
        answer=str(answer),
        answer_kind="numeric",
        rationale=f"{answer - 1} + 1 = {answer}",
    )


def _path(answer: int) -> str:
    return render_path("some steps", str(answer))


# (sender correct?, receiver correct?) for four items, one per case of the gate.
ITEMS = [_item(i, 10 + i) for i in range(4)]
RIGHT = [(True, False), (False, True), (False, False), (True, True)]
SENDER = [
    _path(int(it.answer) + (0 if ok else 1)) for it, (ok, _) in zip(ITEMS, RIGHT, strict=True)
]
RECEIVER = [
    _path(int(it.answer) + (0 if ok else 2)) for it, (_, ok) in zip(ITEMS, RIGHT, strict=True)
]


def test_gate_cases_and_counts_with_gold_fallback() -> None:
    pairs, kept, report = build_pairs(ITEMS, SENDER, RECEIVER, LadaConfig())
    assert kept == [0, 1, 2, 3]
    assert [p.positive_source for p in pairs] == ["sender", "receiver", "gold", "sender"]
    assert (pairs[0].positive, pairs[0].negative) == (SENDER[0], RECEIVER[0])
    assert (pairs[1].positive, pairs[1].negative) == (RECEIVER[1], SENDER[1])
    assert (pairs[2].positive, pairs[2].negative) == (gold_path(ITEMS[2]), RECEIVER[2])
    assert pairs[0].prompt == render_prompt(ITEMS[0])
    assert report.to_dict() == {
        "sender_correct": 2,
        "receiver_swapped": 1,
        "gold_fallback": 1,
        "skipped": 0,
        "ungated": 0,
        "n_pairs": 4,
    }


def test_skip_drops_items_without_a_correct_path() -> None:
    pairs, kept, report = build_pairs(ITEMS, SENDER, RECEIVER, LadaConfig(no_positive="skip"))
    assert kept == [0, 1, 3]
    assert (report.skipped, report.gold_fallback, report.n_pairs) == (1, 0, 3)
    assert all(p.item.id != "q2" for p in pairs)


def test_without_receiver_fallback_a_wrong_sender_falls_back_to_gold() -> None:
    config = LadaConfig(receiver_positive_fallback=False)
    pairs, _, report = build_pairs(ITEMS, SENDER, RECEIVER, config)
    assert (report.receiver_swapped, report.gold_fallback) == (0, 2)
    # the receiver's path is correct here, so the sender's wrong path is the negative
    assert (pairs[1].positive, pairs[1].negative) == (gold_path(ITEMS[1]), SENDER[1])


def test_gate_off_reproduces_the_paper_roles() -> None:
    pairs, kept, report = build_pairs(ITEMS, SENDER, RECEIVER, LadaConfig(correctness_gate=False))
    assert kept == [0, 1, 2, 3]
    assert report.ungated == 4 and report.n_pairs == 4
    assert [(p.positive, p.negative) for p in pairs] == list(zip(SENDER, RECEIVER))
    assert [p.item for p in pairs] == ITEMS
    assert [p.prompt for p in pairs] == [render_prompt(item) for item in ITEMS]
    assert all(p.positive_source == "sender" for p in pairs)


def test_every_case_is_counted_once_per_item() -> None:
    twice = (ITEMS * 2, SENDER * 2, RECEIVER * 2)
    _, kept, report = build_pairs(*twice, LadaConfig())
    assert kept == list(range(8))
    assert (report.sender_correct, report.receiver_swapped, report.gold_fallback) == (4, 2, 2)
    _, kept, report = build_pairs(*twice, LadaConfig(no_positive="skip"))
    assert kept == [0, 1, 3, 4, 5, 7]
    assert (report.skipped, report.n_pairs) == (2, 6)


def test_custom_check_is_used() -> None:
    pairs, _, report = build_pairs(
        ITEMS, SENDER, RECEIVER, LadaConfig(), check=lambda path, item: False
    )
    assert report.gold_fallback == 4
    assert all(p.positive_source == "gold" for p in pairs)


def test_mismatched_lengths_are_rejected() -> None:
    with pytest.raises(ValueError, match="equal lengths"):
        build_pairs(ITEMS, SENDER[:2], RECEIVER, LadaConfig())


def test_a_path_without_its_answer_line_is_no_positive() -> None:
    item = ReasoningItem(
        id="c0",
        domain="chain_sum",
        question="3 + 4 + 5 = ?",
        answer="12",
        answer_kind="numeric",
        rationale="3 + 4 = 7\n7 + 5 = 12",
    )
    sender = " 3 + 4 + 5 = ?\n3 + 4 = 7\n7 + 5 = 12"  # the right number, never `#### 12`
    receiver = " 3 + 4 + 5 = 12 and so on"
    pairs, kept, report = build_pairs([item], [sender], [receiver], LadaConfig())
    assert kept == [0]
    assert (report.sender_correct, report.receiver_swapped, report.gold_fallback) == (0, 0, 1)
    assert pairs[0].positive_source == "gold"
    assert (pairs[0].positive, pairs[0].negative) == (gold_path(item), receiver)
