"""The default offline reasoning-task suite: reasoning-gym task families with gold rationales.

Each *domain* is one reasoning-gym dataset with numeric answers, a ladder of difficulty levels
(each level a reasoning-gym config: digits, terms, animals, value range), a compact question
form and a rationale renderer (`lada.tasks.rationales`). Every item's rationale is checked to end
in the generator's gold answer, so a renderer bug stops generation instead of teaching a wrong
path.

The levels are sized for models that read digits one by one. Low levels (chain_sum 1-2,
leg_counting 1, gcd 1, basic_arithmetic 1: about 35-90 characters of prompt + path) need only
one-digit facts, a lookup table or small Euclid steps, the kind of procedure a ~1M-parameter
transformer can pick up; high levels need multi-digit carries, long multiplication, division of
larger numbers and longer chains (up to ~220 characters on average), which is meant to take a
model about ten times larger. Each level's `summary` records its steps and its measured mean
prompt+path length (compact questions, seed 0); `level_table()` measures them again.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lada.tasks.holdout import is_reserved
from lada.tasks.item import ReasoningItem
from lada.tasks.prompts import gold_path, render_prompt
from lada.tasks.rationales import RENDERERS, Renderer, check_final_value

QuestionStyle = Literal["compact", "original"]
ReservedRule = Literal["any", "exclude", "only"]
DomainName = Literal["chain_sum", "products", "leg_counting", "gcd", "lcm", "basic_arithmetic"]


@dataclass(frozen=True)
class Level:
    """One difficulty level: the reasoning-gym config it maps to and what that means."""

    config: Mapping[str, Any]
    summary: str


@dataclass(frozen=True)
class TaskFamily:
    """A reasoning-gym dataset as a domain: its levels, compact question and rationale."""

    dataset: str
    levels: tuple[Level, ...]
    compact_question: Callable[[Mapping[str, Any]], str]
    rationale: Renderer = field(repr=False)


def _expression_question(metadata: Mapping[str, Any]) -> str:
    expression = str(metadata["expression"])
    expression = re.sub(r"\(\s+", "(", expression)
    expression = re.sub(r"\s+\)", ")", expression)
    return f"{expression} = ?"


def _legs_question(metadata: Mapping[str, Any]) -> str:
    animals: Mapping[str, int] = metadata["animals"]
    return "legs: " + ", ".join(f"{count} {animal}" for animal, count in animals.items())


def _call_question(function: str) -> Callable[[Mapping[str, Any]], str]:
    def render(metadata: Mapping[str, Any]) -> str:
        return f"{function}({', '.join(str(number) for number in metadata['numbers'])})"

    return render


def _terms_digits(terms: int, min_digits: int, max_digits: int) -> dict[str, int]:
    return {
        "min_terms": terms,
        "max_terms": terms,
        "min_digits": min_digits,
        "max_digits": max_digits,
    }


FAMILIES: dict[DomainName, TaskFamily] = {
    "chain_sum": TaskFamily(
        dataset="chain_sum",
        levels=(
            Level(_terms_digits(2, 1, 1), "2 terms of 1 digit; 1 step; ~34 chars; 200 questions"),
            Level(_terms_digits(3, 1, 1), "3 terms of 1 digit; 2 steps; ~49 chars; 2000 questions"),
            Level(_terms_digits(3, 2, 2), "3 terms of 2 digits; 2 steps; ~59 chars"),
            Level(_terms_digits(5, 2, 2), "5 terms of 2 digits; 4 steps; ~98 chars"),
            Level(_terms_digits(5, 3, 3), "5 terms of 3 digits; 4 steps; ~116 chars"),
            Level(_terms_digits(8, 4, 4), "8 terms of 4 digits; 7 steps; ~218 chars"),
        ),
        compact_question=_expression_question,
        rationale=RENDERERS["chain_sum"],
    ),
    "products": TaskFamily(
        dataset="products",
        levels=(
            Level(_terms_digits(2, 1, 1), "1-digit x 1-digit; 1 step; ~34 chars; 100 questions"),
            Level(_terms_digits(2, 2, 2), "2-digit x 2-digit; 2 partials + sum; ~70 chars"),
            Level(_terms_digits(2, 3, 3), "3-digit x 3-digit; 3 partials + 2 sums; ~118 chars"),
            Level(
                _terms_digits(3, 2, 2), "3 factors of 2 digits; 2 long multiplications; ~128 chars"
            ),
        ),
        compact_question=_expression_question,
        rationale=RENDERERS["products"],
    ),
    "leg_counting": TaskFamily(
        dataset="leg_counting",
        levels=(
            Level(
                {"min_animals": 2, "max_animals": 2, "min_instances": 1, "max_instances": 4},
                "2 animals, 1-4 each; 2 products + 1 sum; ~87 chars",
            ),
            Level(
                {"min_animals": 3, "max_animals": 3, "min_instances": 1, "max_instances": 10},
                "3 animals, 1-10 each; 3 products + 2 sums; ~130 chars",
            ),
            Level(
                {"min_animals": 4, "max_animals": 4, "min_instances": 1, "max_instances": 15},
                "4 animals, 1-15 each; 4 products + 3 sums; ~177 chars",
            ),
            Level(
                {"min_animals": 5, "max_animals": 5, "min_instances": 1, "max_instances": 15},
                "5 animals, 1-15 each; 5 products + 4 sums; ~221 chars",
            ),
        ),
        compact_question=_legs_question,
        rationale=RENDERERS["leg_counting"],
    ),
    "gcd": TaskFamily(
        dataset="gcd",
        levels=(
            Level(
                {"min_numbers": 2, "max_numbers": 2, "min_value": 1, "max_value": 50},
                "2 numbers up to 50; ~3 Euclid steps; ~77 chars",
            ),
            Level(
                {"min_numbers": 2, "max_numbers": 2, "min_value": 1, "max_value": 200},
                "2 numbers up to 200; ~4 Euclid steps; ~103 chars",
            ),
            Level(
                {"min_numbers": 2, "max_numbers": 2, "min_value": 1, "max_value": 1000},
                "2 numbers up to 1000; ~5 Euclid steps; ~131 chars",
            ),
            Level(
                {"min_numbers": 3, "max_numbers": 3, "min_value": 1, "max_value": 1000},
                "3 numbers up to 1000; two Euclid runs; ~180 chars",
            ),
        ),
        compact_question=_call_question("gcd"),
        rationale=RENDERERS["gcd"],
    ),
    "lcm": TaskFamily(
        dataset="lcm",
        levels=(
            Level(
                {"min_numbers": 2, "max_numbers": 2, "min_value": 1, "max_value": 30},
                "2 numbers up to 30; Euclid + divide + multiply; ~96 chars",
            ),
            Level(
                {"min_numbers": 2, "max_numbers": 2, "min_value": 1, "max_value": 100},
                "2 numbers up to 100; Euclid + divide + multiply; ~114 chars",
            ),
            Level(
                {"min_numbers": 3, "max_numbers": 3, "min_value": 1, "max_value": 30},
                "3 numbers up to 30; two Euclid runs; ~189 chars",
            ),
        ),
        compact_question=_call_question("lcm"),
        rationale=RENDERERS["lcm"],
    ),
    "basic_arithmetic": TaskFamily(
        dataset="basic_arithmetic",
        levels=(
            Level(
                {**_terms_digits(2, 1, 1), "operators": ("+", "-", "*")},
                "2 signed 1-digit terms, + - *, parentheses; 1-2 steps; ~39 chars",
            ),
            Level(
                {**_terms_digits(3, 1, 1), "operators": ("+", "-", "*", "/")},
                "3 signed 1-digit terms, + - * / (floor); 2-3 steps; ~58 chars",
            ),
            Level(
                {**_terms_digits(4, 2, 2), "operators": ("+", "-", "*", "/")},
                "4 signed 2-digit terms; 3-4 steps; ~92 chars",
            ),
            Level(
                {**_terms_digits(5, 2, 2), "operators": ("+", "-", "*", "/")},
                "5 signed 2-digit terms; 4-5 steps; ~118 chars",
            ),
        ),
        compact_question=_expression_question,
        rationale=RENDERERS["basic_arithmetic"],
    ),
}
"""Every domain this suite knows, by name (the reasoning-gym dataset of the same name)."""

if set(get_args(DomainName)) != set(FAMILIES):  # pragma: no cover - a guard for editors
    raise RuntimeError("DomainName and FAMILIES must list the same domains")

_RESERVED_GYM_FIELDS = ("seed", "size")


class DomainSpec(BaseModel):
    """One domain of a suite at one difficulty level."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: DomainName = Field(description="Task family: a key of `FAMILIES`.")
    difficulty: int = Field(
        default=1,
        ge=1,
        description="Level 1..N of the family's ladder (N = len(FAMILIES[name].levels)); higher "
        "levels mean more terms, digits, animals or Euclid steps and longer paths.",
    )
    weight: float = Field(
        default=1.0,
        gt=0,
        description="Relative share of items: the domain gets round(weight * items_per_domain) "
        "items, or this share of total_items when that is set.",
    )
    gym_overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra reasoning-gym config fields applied over the level's config (not "
        "seed or size). Every item's rationale is still checked against its gold answer.",
    )

    @field_validator("gym_overrides")
    @classmethod
    def _no_reserved_fields(cls, overrides: dict[str, Any]) -> dict[str, Any]:
        reserved = sorted(set(overrides) & set(_RESERVED_GYM_FIELDS))
        if reserved:
            raise ValueError(f"gym_overrides: {reserved} are set by the suite, not per domain")
        return overrides

    @model_validator(mode="after")
    def _difficulty_in_range(self) -> DomainSpec:
        levels = len(FAMILIES[self.name].levels)
        if self.difficulty > levels:
            raise ValueError(
                f"difficulty: {self.name} has levels 1..{levels}, got {self.difficulty}"
            )
        return self


class SuiteConfig(BaseModel):
    """Which domains, levels and how many items a suite holds, and how questions read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    domains: list[DomainSpec] = Field(
        min_length=1, description="The domains of the suite, each at one difficulty level."
    )
    items_per_domain: int = Field(
        default=200, ge=1, description="Items for a domain of weight 1 (ignored if total_items)."
    )
    total_items: int | None = Field(
        default=None,
        ge=1,
        description="If set, the suite's total item count, split over domains by weight "
        "(largest remainder, so the counts add up exactly; a domain may get 0).",
    )
    seed: int = Field(
        default=0,
        ge=0,
        description="Suite seed; each domain's reasoning-gym seed is derived from it, its name "
        "and its level, so domains draw independent streams.",
    )
    question_style: QuestionStyle = Field(
        default="compact",
        description="'compact': short symbolic question (`4 - 1 - 7 = ?`, `gcd(780, 461)`) for "
        "small-context models; 'original': reasoning-gym's own wording.",
    )
    deduplicate: bool = Field(
        default=True,
        description="Skip a generated item whose question already occurs in the suite.",
    )
    reserved: ReservedRule = Field(
        default="any",
        description="Which questions to draw under the evaluation-reservation rule "
        "(`lada.tasks.holdout`): 'any'; 'exclude' skips questions reserved for evaluation "
        "(training-only draws such as pretraining); 'only' keeps just those (test items).",
    )
    evaluation_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of each question space reserved for evaluation (used by `reserved`).",
    )
    max_attempts_per_item: int = Field(
        default=50,
        ge=1,
        description="Generator draws allowed per requested item of a domain before giving up "
        "with an error (bounds the search for distinct questions).",
    )

    @model_validator(mode="after")
    def _unique_domains(self) -> SuiteConfig:
        seen: set[tuple[str, int]] = set()
        for index, spec in enumerate(self.domains):
            key = (spec.name, spec.difficulty)
            if key in seen:
                raise ValueError(
                    f"domains[{index}]: {spec.name} at difficulty {spec.difficulty} is listed "
                    "twice; raise its weight instead"
                )
            seen.add(key)
        return self


def _specs(*pairs: tuple[DomainName, int]) -> list[DomainSpec]:
    return [DomainSpec(name=name, difficulty=difficulty) for name, difficulty in pairs]


SUITES: dict[str, SuiteConfig] = {
    "default": SuiteConfig(
        domains=_specs(
            ("chain_sum", 2),
            ("leg_counting", 1),
            ("gcd", 1),
            ("products", 2),
            ("lcm", 2),
            ("basic_arithmetic", 3),
        ),
    ),
    "proof": SuiteConfig(
        domains=_specs(
            ("chain_sum", 2),
            ("leg_counting", 1),
            ("basic_arithmetic", 1),
            ("gcd", 1),
        ),
    ),
    "general": SuiteConfig(
        domains=[
            DomainSpec(name="chain_sum", difficulty=1, weight=0.2),
            DomainSpec(name="products", difficulty=1, weight=0.1),
            DomainSpec(name="products", difficulty=2, weight=2),
            DomainSpec(name="lcm", difficulty=1),
            DomainSpec(name="gcd", difficulty=2, weight=2),
            DomainSpec(name="chain_sum", difficulty=2, weight=0.05),
            DomainSpec(name="leg_counting", difficulty=1, weight=0.05),
            DomainSpec(name="basic_arithmetic", difficulty=1, weight=0.05),
        ],
        items_per_domain=600,
    ),
    "easy": SuiteConfig(
        domains=_specs(
            ("chain_sum", 2),
            ("leg_counting", 1),
            ("gcd", 1),
            ("lcm", 1),
            ("basic_arithmetic", 1),
        ),
    ),
    "hard": SuiteConfig(
        domains=_specs(
            ("chain_sum", 5),
            ("products", 3),
            ("leg_counting", 3),
            ("gcd", 3),
            ("lcm", 3),
            ("basic_arithmetic", 4),
        ),
    ),
    "ladder": SuiteConfig(
        domains=[
            DomainSpec(name=name, difficulty=level)
            for name, family in FAMILIES.items()
            for level in range(1, len(family.levels) + 1)
        ],
        items_per_domain=50,
    ),
}
"""Ready suites. 'default' (the quickstart's) mixes short levels built from one-digit facts and
small Euclid steps (chain_sum 2, leg_counting 1, gcd 1) with levels that need multi-digit carries,
long multiplication, division of two-digit numbers or precedence (products 2, lcm 2,
basic_arithmetic 3). Each family appears once, so an item's domain (its family name) also names
its level within the suite; 'easy' and
'hard' hold the low and high ends of the ladders; 'ladder' holds every domain at every level.
chain_sum 1 (200 questions) and products 1 (100) are left out of the larger suites so that a few
hundred distinct items per domain can always be drawn.

'proof' is the decisive experiment's setting: three levels a small teacher masters (chain_sum 2,
leg_counting 1, basic_arithmetic 1) and gcd 1, which the teacher is not taught. 'general' is the
client SLMs' pretraining base: the answer format, one-digit sums and products, two-digit
products, small lcm and larger gcd, with a glimpse (30 items each) of the three levels the
'proof' teacher masters, so that a base SLM knows the format of every task but is weak on them
(its small levels are only ever trained on, never tested)."""


def domain_seed(suite_seed: int, spec: DomainSpec) -> int:
    """A stable per-domain reasoning-gym seed (independent of Python's hash salt)."""
    digest = hashlib.sha256(f"lada-gym-suite:{suite_seed}:{spec.name}:{spec.difficulty}".encode())
    return int.from_bytes(digest.digest()[:8], "big") % 2**31


def domain_counts(config: SuiteConfig) -> list[int]:
    """Items per domain, in the order of `config.domains`."""
    weights = [spec.weight for spec in config.domains]
    if config.total_items is None:
        return [max(1, int(weight * config.items_per_domain + 0.5)) for weight in weights]
    shares = [config.total_items * weight / sum(weights) for weight in weights]
    counts = [int(share) for share in shares]
    by_remainder = sorted(range(len(shares)), key=lambda i: (counts[i] - shares[i], i))
    for index in by_remainder[: config.total_items - sum(counts)]:
        counts[index] += 1
    return counts


def _create_dataset(spec: DomainSpec, where: str, seed: int, size: int) -> Any:
    import reasoning_gym

    family = FAMILIES[spec.name]
    gym_config = {**family.levels[spec.difficulty - 1].config, **spec.gym_overrides}
    try:
        return reasoning_gym.create_dataset(family.dataset, size=size, seed=seed, **gym_config)
    except (AssertionError, TypeError) as error:
        raise ValueError(
            f"{where}.gym_overrides: reasoning-gym rejected {gym_config}: {error}"
        ) from error


def _generate_domain(
    config: SuiteConfig, position: int, count: int, seen_questions: set[str]
) -> list[ReasoningItem]:
    spec = config.domains[position]
    where = f"domains[{position}]"
    family = FAMILIES[spec.name]
    gym_seed = domain_seed(config.seed, spec)
    attempts = count * config.max_attempts_per_item
    dataset = _create_dataset(spec, where, gym_seed, attempts)
    items: list[ReasoningItem] = []
    for gym_index in range(attempts):
        if len(items) == count:
            break
        entry = dataset[gym_index]
        metadata = entry["metadata"]
        if config.question_style == "compact":
            question = family.compact_question(metadata)
        else:
            question = str(entry["question"]).strip()
        if config.deduplicate and question in seen_questions:
            continue
        if config.reserved != "any" and is_reserved(question, config.evaluation_share) != (
            config.reserved == "only"
        ):
            continue
        answer = str(entry["answer"]).strip()
        rationale = "\n".join(family.rationale(metadata))
        # Reserved (test-only) draws get their own id space, so they never collide with a
        # training draw of the same seed.
        tag = "e" if config.reserved == "only" else ""
        item_id = f"{spec.name}:d{spec.difficulty}:{config.seed}:{tag}{len(items)}"
        check_final_value(rationale, answer, where=f"{where} item {item_id} ({question!r})")
        seen_questions.add(question)
        items.append(
            ReasoningItem(
                id=item_id,
                domain=spec.name,
                question=question,
                answer=answer,
                answer_kind="numeric",
                rationale=rationale,
                difficulty=spec.difficulty,
                source=f"reasoning-gym/{family.dataset}",
                meta={"gym_seed": gym_seed, "gym_index": gym_index},
            )
        )
    if len(items) < count:
        raise ValueError(
            f"{where}: {spec.name} at difficulty {spec.difficulty} gave {len(items)} distinct "
            f"questions in {attempts} draws but {count} were requested; lower items_per_domain, "
            "total_items or weight, choose a higher difficulty, or raise max_attempts_per_item"
        )
    return items


def build_suite(config: SuiteConfig) -> list[ReasoningItem]:
    """All items of a suite, grouped by domain in config order; the same config gives the same
    items. Raises if a rationale disagrees with its gold answer or a domain runs out of distinct
    questions."""
    seen_questions: set[str] = set()
    items: list[ReasoningItem] = []
    for position, count in enumerate(domain_counts(config)):
        if count:
            items += _generate_domain(config, position, count, seen_questions)
    return items


def load_suite(
    name: str,
    n: int | None = None,
    seed: int = 0,
    *,
    reserved: ReservedRule = "any",
    evaluation_share: float = 0.0,
) -> list[ReasoningItem]:
    """A named suite of `SUITES` with `seed`; `n`, if given, is the total item count (split over
    the suite's domains by weight), otherwise each domain gets the suite's items_per_domain.
    `reserved` and `evaluation_share` draw only training or only test questions (see
    `SuiteConfig.reserved`)."""
    if name not in SUITES:
        raise ValueError(f"suite: unknown name {name!r}; known suites: {sorted(SUITES)}")
    fields = SUITES[name].model_dump()
    fields.update(seed=seed, total_items=n, reserved=reserved, evaluation_share=evaluation_share)
    return build_suite(SuiteConfig.model_validate(fields))


def corpus_text(n: int, seed: int, question_style: QuestionStyle = "compact") -> list[str]:
    """`n` prompt+path strings spread evenly over every domain at every level, for building a
    tokenizer that covers all the suite's text (duplicates allowed: some levels are small)."""
    config = SuiteConfig(
        domains=SUITES["ladder"].domains,
        total_items=n,
        seed=seed,
        question_style=question_style,
        deduplicate=False,
    )
    return [render_prompt(item) + gold_path(item) for item in build_suite(config)]


@dataclass(frozen=True)
class LevelRow:
    """Measured shape of one domain level: an example and prompt+path lengths in characters."""

    domain: str
    difficulty: int
    summary: str
    example_question: str
    example_path: str
    mean_chars: float
    max_chars: int


def _domain_name(name: str) -> DomainName:
    """`name` as a key of `FAMILIES`; KeyError for a name that is none."""
    for known in FAMILIES:
        if known == name:
            return known
    raise KeyError(name)


def level_table(
    items_per_level: int = 50,
    seed: int = 0,
    domains: Sequence[str] | None = None,
    question_style: QuestionStyle = "compact",
) -> list[LevelRow]:
    """One row per domain level with measured prompt+path lengths (for docs and `lada data`)."""
    rows: list[LevelRow] = []
    for name in map(_domain_name, domains or list(FAMILIES)):
        family = FAMILIES[name]
        for difficulty in range(1, len(family.levels) + 1):
            config = SuiteConfig(
                domains=[DomainSpec(name=name, difficulty=difficulty)],
                items_per_domain=items_per_level,
                seed=seed,
                question_style=question_style,
                deduplicate=False,
            )
            items = build_suite(config)
            lengths = [len(render_prompt(item) + gold_path(item)) for item in items]
            rows.append(
                LevelRow(
                    domain=name,
                    difficulty=difficulty,
                    summary=family.levels[difficulty - 1].summary,
                    example_question=items[0].question,
                    example_path=gold_path(items[0]),
                    mean_chars=sum(lengths) / len(lengths),
                    max_chars=max(lengths),
                )
            )
    return rows
