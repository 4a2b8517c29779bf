"""The reasoning-gym suite: determinism, ids, rationale correctness, lengths and validation."""

from __future__ import annotations

import dataclasses
import math
import re
from statistics import mean

import pytest
import reasoning_gym
from pydantic import ValidationError
from reasoning_gym.arithmetic.leg_counting import ANIMALS

from lada.tasks.gym_suite import (
    FAMILIES,
    SUITES,
    DomainSpec,
    SuiteConfig,
    build_suite,
    corpus_text,
    domain_counts,
    domain_seed,
    level_table,
    load_suite,
)
from lada.tasks.item import ReasoningItem
from lada.tasks.prompts import ANSWER_MARKER, gold_path, render_prompt
from lada.tasks.rationales import (
    RationaleMismatchError,
    basic_arithmetic_rationale,
    chain_sum_rationale,
    check_final_value,
    final_value,
    gcd_rationale,
    lcm_rationale,
    products_rationale,
)

ITEMS_PER_LEVEL = 50
ALL_LEVELS = [
    (name, level) for name, family in FAMILIES.items() for level in range(1, len(family.levels) + 1)
]
ARITHMETIC_SIDE = re.compile(r"^[-+*/() 0-9]+$")
LEG_STEP = re.compile(r"^(\d+) ([a-z ]+) \* (\d+) = (\d+)$")
EUCLID_STEP = re.compile(r"^(\d+) = (\d+) \* (\d+) \+ (\d+)$")
GCD_STEP = re.compile(r"^gcd\((\d+), (\d+)\) = (\d+)$")


def level_items(name: str, level: int, seed: int = 0, style: str = "compact") -> list:
    config = SuiteConfig(
        domains=[DomainSpec(name=name, difficulty=level)],
        items_per_domain=ITEMS_PER_LEVEL,
        seed=seed,
        question_style=style,
        deduplicate=False,
    )
    return build_suite(config)


def evaluate_side(side: str) -> int:
    assert ARITHMETIC_SIDE.match(side), f"not plain arithmetic: {side!r}"
    return eval(side.replace("/", "//"))  # only digits, signs, spaces and parentheses


def assert_step_holds(line: str) -> None:
    """Every rendered step is a true statement, whatever the family."""
    if match := LEG_STEP.match(line):
        count, animal, legs, total = match.groups()
        assert ANIMALS[animal] == int(legs), line
        assert int(count) * int(legs) == int(total), line
    elif match := GCD_STEP.match(line):
        first, second, result = map(int, match.groups())
        assert math.gcd(first, second) == result, line
    else:
        if match := EUCLID_STEP.match(line):
            divisor, remainder = int(match.group(3)), int(match.group(4))
            assert 0 <= remainder < divisor, line
        left, right = line.rsplit(" = ", 1)
        assert evaluate_side(left) == evaluate_side(right), line


@pytest.fixture(scope="module")
def items_by_level() -> dict[tuple[str, int], list[ReasoningItem]]:
    return {(name, level): level_items(name, level) for name, level in ALL_LEVELS}


def small_config(**changes: object) -> SuiteConfig:
    fields: dict[str, object] = {
        "domains": [
            DomainSpec(name="chain_sum", difficulty=1),
            DomainSpec(name="gcd", difficulty=2, weight=2.0),
            DomainSpec(name="leg_counting", difficulty=1),
        ],
        "items_per_domain": 10,
        "seed": 3,
    }
    fields.update(changes)
    return SuiteConfig.model_validate(fields)


# ----------------------------------------------------------------------------- rationale renderers


def test_chain_sum_steps_go_left_to_right() -> None:
    assert chain_sum_rationale({"expression": "4 - 1 - 7"}) == ["4 - 1 = 3", "3 - 7 = -4"]


def test_products_use_one_partial_product_per_nonzero_digit() -> None:
    steps = products_rationale({"expression": "47 * 305"})
    assert steps == ["47 * 5 = 235", "47 * 300 = 14100", "235 + 14100 = 14335"]
    assert int(final_value("\n".join(steps))) == 47 * 305


def test_gcd_follows_euclid_and_names_the_result() -> None:
    steps = gcd_rationale({"numbers": [461, 780]})
    assert steps[0] == "780 = 1 * 461 + 319"
    assert steps[-1] == f"gcd(461, 780) = {math.gcd(461, 780)}"
    assert all(EUCLID_STEP.match(step) for step in steps[:-1])


def test_lcm_divides_by_the_gcd_then_multiplies() -> None:
    steps = lcm_rationale({"numbers": [12, 18]})
    assert steps[-3:] == ["gcd(12, 18) = 6", "12 / 6 = 2", "2 * 18 = 36"]


def test_basic_arithmetic_respects_precedence_negation_and_floor_division() -> None:
    steps = basic_arithmetic_rationale({"expression": "-( 3 + 4 ) * 2 - -7 / 2"})
    assert steps == ["3 + 4 = 7", "-(7) = -7", "-7 * 2 = -14", "-7 / 2 = -4", "-14 - -4 = -10"]


def test_check_final_value_rejects_a_wrong_or_missing_result() -> None:
    check_final_value("2 + 3 = 5", "5", where="x")
    with pytest.raises(RationaleMismatchError, match="gold answer"):
        check_final_value("2 + 3 = 6", "5", where="x")
    with pytest.raises(RationaleMismatchError, match="gold answer"):
        check_final_value("no computation here", "5", where="x")
    with pytest.raises(RationaleMismatchError, match="answer"):
        check_final_value("1 = 1", "12:30", where="x")


# ----------------------------------------------------------------------------- every level


@pytest.mark.parametrize(("name", "level"), ALL_LEVELS)
def test_every_step_is_true_and_the_last_equals_the_answer(
    items_by_level: dict[tuple[str, int], list[ReasoningItem]], name: str, level: int
) -> None:
    items = items_by_level[(name, level)]
    assert len(items) == ITEMS_PER_LEVEL
    for item in items:
        assert item.domain == name and item.difficulty == level
        assert item.answer_kind == "numeric" and re.fullmatch(r"-?\d+", item.answer)
        assert int(final_value(item.rationale)) == int(item.answer), item
        for line in item.rationale.splitlines():
            assert_step_holds(line)
        assert gold_path(item).endswith(f"{ANSWER_MARKER} {item.answer}\n")


def test_difficulty_lengthens_the_path(
    items_by_level: dict[tuple[str, int], list[ReasoningItem]],
) -> None:
    for name, family in FAMILIES.items():
        means = [
            mean(len(gold_path(item)) for item in items_by_level[(name, level)])
            for level in range(1, len(family.levels) + 1)
        ]
        assert means == sorted(means) and len(set(means)) == len(means), (name, means)


def test_level_one_fits_a_small_context_and_no_level_is_long(
    items_by_level: dict[tuple[str, int], list[ReasoningItem]],
) -> None:
    for (name, level), items in items_by_level.items():
        lengths = [len(render_prompt(item) + gold_path(item)) for item in items]
        limit = 120 if level == 1 else 250
        assert mean(lengths) < limit, (name, level, mean(lengths))


def test_compact_questions_are_short_and_original_keep_the_gym_wording() -> None:
    for name in FAMILIES:
        compact = level_items(name, 1, seed=5)
        original = level_items(name, 1, seed=5, style="original")
        dataset = reasoning_gym.create_dataset(
            FAMILIES[name].dataset,
            size=ITEMS_PER_LEVEL,
            seed=domain_seed(5, DomainSpec(name=name, difficulty=1)),
            **FAMILIES[name].levels[0].config,
        )
        for short, long in zip(compact, original, strict=True):
            assert short.answer == long.answer and short.rationale == long.rationale
            assert len(short.question) <= 40 and len(short.question) < len(long.question)
            assert long.question == dataset[long.meta["gym_index"]]["question"].strip()


# ----------------------------------------------------------------------------- suites


def test_same_seed_same_items_other_seed_other_items() -> None:
    first = [item.to_dict() for item in build_suite(small_config())]
    again = [item.to_dict() for item in build_suite(small_config())]
    other = build_suite(small_config(seed=4))
    assert first == again
    assert {item["question"] for item in first} != {item.question for item in other}


def test_ids_are_unique_and_questions_deduplicated() -> None:
    config = small_config(items_per_domain=60)
    items = build_suite(config)
    assert len(items) == sum(domain_counts(config)) == 60 * 4
    assert len({item.id for item in items}) == len(items)
    assert len({item.question for item in items}) == len(items)
    for item in items:
        domain, level, seed, index = item.id.split(":")
        assert (domain, level, seed) == (item.domain, f"d{item.difficulty}", "3")
        assert int(index) >= 0
        assert item.source == f"reasoning-gym/{FAMILIES[item.domain].dataset}"


def test_weights_and_total_items_set_the_counts() -> None:
    assert domain_counts(small_config()) == [10, 20, 10]
    counts = domain_counts(small_config(total_items=11))
    assert sum(counts) == 11 and counts[1] > counts[0]
    items = build_suite(small_config(total_items=11))
    assert [sum(item.domain == name for item in items) for name in ("chain_sum", "gcd")] == [
        counts[0],
        counts[1],
    ]


def test_running_out_of_distinct_questions_is_a_clear_error() -> None:
    config = SuiteConfig(
        domains=[DomainSpec(name="products", difficulty=1)],
        items_per_domain=101,
        max_attempts_per_item=5,
    )
    with pytest.raises(ValueError, match=r"domains\[0\]: products at difficulty 1 .* distinct"):
        build_suite(config)


def test_a_renderer_that_disagrees_with_the_gold_answer_stops_generation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = dataclasses.replace(FAMILIES["chain_sum"], rationale=lambda metadata: ["1 + 1 = 2"])
    monkeypatch.setitem(FAMILIES, "chain_sum", broken)
    with pytest.raises(RationaleMismatchError, match=r"domains\[0\] item chain_sum:d1:3:"):
        build_suite(small_config())


def test_load_suite_total_seed_and_mix_of_levels() -> None:
    items = load_suite("default", n=30, seed=2)
    assert len(items) == 30
    assert {item.id.split(":")[2] for item in items} == {"2"}
    levels = {(spec.name, spec.difficulty) for spec in SUITES["default"].domains}
    assert {(item.domain, item.difficulty) for item in items} == levels
    assert min(level for _, level in levels) == 1 and max(level for _, level in levels) >= 2
    assert [item.id for item in load_suite("default", n=30, seed=2)] == [item.id for item in items]
    with pytest.raises(ValueError, match="suite: unknown name"):
        load_suite("nope")


def test_every_named_suite_builds() -> None:
    for name, config in SUITES.items():
        items = load_suite(name, n=2 * len(config.domains), seed=1)
        assert len(items) == 2 * len(config.domains), name


def test_corpus_text_covers_every_domain_as_prompt_plus_path() -> None:
    texts = corpus_text(2 * len(ALL_LEVELS), seed=0)
    assert len(texts) == 2 * len(ALL_LEVELS)
    assert all(text.startswith("Q: ") and f"\n{ANSWER_MARKER} " in text for text in texts)
    joined = "".join(texts)
    for marker in ("gcd(", "lcm(", "legs: ", " * ", " - ", "= ?"):
        assert marker in joined


def test_level_table_reports_each_level() -> None:
    rows = level_table(items_per_level=5, domains=["gcd"])
    assert [row.difficulty for row in rows] == list(range(1, len(FAMILIES["gcd"].levels) + 1))
    assert all(row.example_question.startswith("gcd(") for row in rows)
    assert all(row.max_chars >= row.mean_chars > len(row.example_question) for row in rows)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"domains": [{"name": "chain_sum", "difficulty": 99}]}, "difficulty"),
        ({"domains": [{"name": "sudoku"}]}, "name"),
        ({"domains": [{"name": "gcd", "weight": 0}]}, "weight"),
        ({"domains": [{"name": "gcd", "gym_overrides": {"seed": 1}}]}, "gym_overrides"),
        ({"domains": [{"name": "gcd"}], "question_style": "verbose"}, "question_style"),
        ({"domains": [{"name": "gcd"}], "items_per_domain": 0}, "items_per_domain"),
        ({"domains": [{"name": "gcd"}, {"name": "gcd"}]}, r"domains\[1\]"),
        ({"domains": []}, "domains"),
        ({"domains": [{"name": "gcd"}], "colour": "red"}, "colour"),
    ],
)
def test_invalid_config_names_the_field(fields: dict[str, object], named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        SuiteConfig.model_validate(fields)


def test_gym_overrides_rejected_by_reasoning_gym_name_the_domain() -> None:
    config = SuiteConfig.model_validate(
        {"domains": [{"name": "gcd"}, {"name": "lcm", "gym_overrides": {"max_value": 0}}]}
    )
    with pytest.raises(ValueError, match=r"domains\[1\]\.gym_overrides"):
        build_suite(config)
