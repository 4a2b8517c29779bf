"""The training path really teaches: a tiny model learns an easy domain far above chance.

The domain is reasoning-gym leg counting with one animal of one instance (`legs: 1 lion` ->
`1 lion * 4 = 4`, `#### 4`): a few dozen facts, so a ~1M-parameter model can hold all of them
after a fixed, small number of steps. Chance is the share of the most common answer.
"""

from __future__ import annotations

from collections import Counter

import pytest

from lada.models.presets import load_model
from lada.models.training import evaluate, path_nll
from lada.tasks.gym_suite import DomainSpec, SuiteConfig, build_suite
from lada.tasks.prompts import gold_path, render_prompt

ONE_ANIMAL = {"min_animals": 1, "max_animals": 1, "min_instances": 1, "max_instances": 1}


@pytest.mark.slow
def test_tiny_model_learns_one_animal_leg_counting_within_120_steps() -> None:
    spec = DomainSpec(name="leg_counting", difficulty=1, gym_overrides=ONE_ANIMAL)
    items = build_suite(
        SuiteConfig(domains=[spec], items_per_domain=15, seed=0, max_attempts_per_item=200)
    )
    chance = max(Counter(it.answer for it in items).values()) / len(items)
    model = load_model("tiny-1m", device="cpu", seed=0, learning_rate=3e-3)
    before = evaluate(model, items, max_new_tokens=30).accuracy
    prompts = [render_prompt(it) for it in items]
    paths = [gold_path(it) for it in items]
    for _ in range(120):
        model.train_step(path_nll(model, prompts, paths))
    after = evaluate(model, items, max_new_tokens=30)
    assert before <= chance
    assert after.accuracy >= 0.8 > chance + 0.4, (after.accuracy, chance)
