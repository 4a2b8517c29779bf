"""No test question in anything a party trains on: the evaluation-reservation rule end to end."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from lada.experiments.config import load_config
from lada.experiments.setup import load_split
from lada.models.pretrain import pretraining_items
from lada.models.shipped import SHIPPED
from lada.tasks.gym_suite import SUITES, load_suite
from lada.tasks.holdout import evaluation_bucket, is_reserved, normalize_question
from lada.tasks.item import ReasoningItem
from lada.tasks.splits import split_federated

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
SUITE_CONFIGS = [
    path
    for path in sorted(CONFIGS.glob("*.toml"))
    if load_config(path).data.suite is not None
    and load_config(path).data.split.evaluation_share is not None
]


def test_bucket_is_fixed_and_whitespace_insensitive() -> None:
    assert evaluation_bucket("3 + 4 = ?") == evaluation_bucket("  3  +\t4 = ? ")
    assert evaluation_bucket("3 + 4 = ?") != evaluation_bucket("3 + 5 = ?")
    assert normalize_question(" a \n b ") == "a b"
    # About the share of a question space is reserved, none at share 0, all at share 1.
    questions = [f"gcd({a}, {b})" for a in range(1, 41) for b in range(1, 41)]
    share = sum(is_reserved(q, 0.25) for q in questions) / len(questions)
    assert 0.2 < share < 0.3
    assert not any(is_reserved(q, 0.0) for q in questions)
    assert all(is_reserved(q, 1.0) for q in questions)
    with pytest.raises(ValueError, match="evaluation_share"):
        is_reserved("x", 1.5)


def _items(per_domain: int = 200) -> list[ReasoningItem]:
    return [
        ReasoningItem(f"{d}:{i}", d, f"{d} question {i}", "1", "numeric")
        for d in ("algebra", "logic", "words")
        for i in range(per_domain)
    ]


@pytest.mark.parametrize("partition", ["domain", "iid", "dirichlet"])
def test_split_takes_tests_only_from_reserved_questions(partition: str) -> None:
    sizes = {"n_public": 30, "n_clients": 3, "n_train": 20, "n_test": 10}
    split = split_federated(_items(), partition=partition, evaluation_share=0.3, seed=1, **sizes)
    trained = split.public_pool + [it for c in split.clients for it in c.train]
    tested = [it for c in split.clients for it in c.test]
    assert len(tested) == 30 and len(split.public_pool) == 30
    assert all(is_reserved(it.question, 0.3) for it in tested)
    assert not any(is_reserved(it.question, 0.3) for it in trained)
    for client in split.clients:  # the test split follows the client's own domain mix
        assert set(Counter(i.domain for i in client.test)) <= {i.domain for i in client.train}
    again = split_federated(_items(), partition=partition, evaluation_share=0.3, seed=1, **sizes)
    assert [i.id for c in again.clients for i in c.test] == [i.id for i in tested]


def test_split_names_the_shortage_of_reserved_questions() -> None:
    with pytest.raises(ValueError, match="reserved for evaluation"):
        split_federated(
            _items(per_domain=20),
            n_public=5,
            n_clients=3,
            n_train=5,
            n_test=10,
            evaluation_share=0.25,
        )


def test_suite_draws_respect_the_rule() -> None:
    train = load_suite("proof", n=80, seed=3, reserved="exclude", evaluation_share=0.25)
    test = load_suite("proof", n=80, seed=3, reserved="only", evaluation_share=0.25)
    assert not any(is_reserved(it.question, 0.25) for it in train)
    assert all(is_reserved(it.question, 0.25) for it in test)
    assert not {it.id for it in train} & {it.id for it in test}


@pytest.mark.parametrize("path", SUITE_CONFIGS, ids=lambda p: p.name)
def test_no_test_question_in_any_training_data_of_shipped_configs(path: Path) -> None:
    config = load_config(path, ["data.split.n_public=40", "data.split.n_train=8"])
    split = load_split(config)
    tests = {normalize_question(it.question) for c in split.clients for it in c.test}
    assert tests
    trained = split.public_pool + [it for c in split.clients for it in c.train]
    assert not tests & {normalize_question(it.question) for it in trained}
    # Pretraining of every model the config uses: shipped bases, or the LLM's own config.
    pretrain_configs = [SHIPPED[s.preset].pretrain for s in config.slms if s.preset in SHIPPED]
    if config.llm.preset in SHIPPED:
        pretrain_configs.append(SHIPPED[config.llm.preset].pretrain)
    elif config.llm.pretrain is not None:
        pretrain_configs.append(config.llm.pretrain)
    for pretrain in pretrain_configs:
        assert pretrain.evaluation_share >= config.data.split.evaluation_share
        seen = {normalize_question(it.question) for it in pretraining_items(pretrain)}
        assert not tests & seen, f"{path.name}: test questions in {pretrain.suite} pretraining"


def test_levels_too_small_for_disjoint_sets_are_never_tested() -> None:
    """chain_sum 1 (200 questions) and products 1 (100) only ever appear in training suites."""
    small = {("chain_sum", 1), ("products", 1)}
    for path in SUITE_CONFIGS:
        suite = SUITES[load_config(path).data.suite]
        assert not small & {(d.name, d.difficulty) for d in suite.domains}, path.name
