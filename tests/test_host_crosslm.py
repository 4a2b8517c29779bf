"""CrossLM host: parsing generated items, keeping by score, steering, one in-process round."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from lada.experiments.config import ExperimentConfig, validate
from lada.experiments.runner import Runner, private_texts
from lada.hosts.base import ServerParty
from lada.hosts.config import CrossLMConfig
from lada.hosts.crosslm import (
    CrossLM,
    CrossLMClientState,
    CrossLMServerState,
    ItemScores,
    keep_top,
    mean_scores,
    parse_generated,
    seed_prefix,
)
from lada.hosts.parties import host_state
from lada.hosts.payloads import PayloadError
from lada.models.persist import save_model
from lada.models.presets import load_model, load_model_dir
from lada.models.training import sft_on_paths
from lada.tasks.item import ReasoningItem
from lada.tasks.prompts import gold_path

#: Full "Q: ...\nA: ..." texts the test LLM learns to write (questions no split draws).
WRITTEN_TEXTS = [
    "Q: legs: 7 cat\nA: 7 cat * 4 = 28\n#### 28\n",
    "Q: 12 + 34 + 5 = ?\nA: 12 + 34 = 46\n46 + 5 = 51\n#### 51\n",
    "Q: gcd(77, 7)\nA: 77 = 11 * 7 + 0\ngcd(77, 7) = 7\n#### 7\n",
    "Q: legs: 9 duck\nA: 9 duck * 2 = 18\n#### 18\n",
]


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    # Tiny models: thread hand-offs cost more than they save on a shared 2-core machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def writer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LLM trained with loss on the question text too (prompt "" + full text)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = load_model("tiny-1m", device="cpu", seed=0, learning_rate=8e-3, label="llm")
    texts = WRITTEN_TEXTS
    sft_on_paths(model, [""] * len(texts), texts, epochs=30, batch_size=4, seed=0, progress=False)
    torch.set_num_threads(threads)
    target = tmp_path_factory.mktemp("writer")
    save_model(model, target)
    return target


def _seed(question: str, kind: str = "numeric", choices: tuple[str, ...] = ()) -> ReasoningItem:
    return ReasoningItem(
        id=f"seed-{question}",
        domain="leg_counting",
        question=question,
        answer="A" if kind == "option" else "4",
        answer_kind=kind,  # type: ignore[arg-type]
        rationale="1 cat * 4 = 4",
        choices=choices,
        difficulty=1,
    )


# ----------------------------------------------------------------------------- parsing
def test_seed_prefix_is_the_leading_non_digit_text() -> None:
    assert seed_prefix("legs: 5 lion, 5 bird", 4) == "legs: "
    assert seed_prefix("gcd(22, 24)", 4) == "gcd("
    assert seed_prefix("57 + 10 = ?", 4) == ""
    assert seed_prefix("Which planet is the largest one here?", 3) == "Which planet is "


def test_a_valid_generation_becomes_a_generated_item() -> None:
    seed = _seed("legs: 1 cat")
    known = {"legs: 1 cat"}
    text = "legs: 3 dog, 2 bird\nA: 3 dog * 4 = 12\n2 bird * 2 = 4\n12 + 4 = 16\n#### 16\n"
    item, verdict = parse_generated(text, seed, item_id="gen-1", known_questions=known)
    assert verdict == "valid" and item is not None
    assert item.question == "legs: 3 dog, 2 bird"
    assert item.answer == "16"
    assert item.rationale == "3 dog * 4 = 12\n2 bird * 2 = 4\n12 + 4 = 16"
    assert gold_path(item) == text.split("\nA:", 1)[1]  # the LLM's path, unchanged
    assert (item.source, item.domain, item.answer_kind) == ("generated", seed.domain, "numeric")
    assert item.meta["seed_id"] == seed.id and item.id == "gen-1"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("legs: 3 dog #### 12\n", "no_question"),  # no "A:" line
        ("\nA: 3 dog * 4 = 12\n#### 12\n", "no_question"),  # empty question
        ("legs: 3 dog\nA: 3 dog * 4 = 12\n", "no_answer"),  # no answer line
        ("legs: 3 dog\nA: 3 dog * 4 = 12\n#### twelve\n", "no_answer"),  # not a number
        ("legs: 1 cat\nA: 1 cat * 4 = 4\n#### 4\n", "duplicate"),  # a public question
        ("legs:   1  cat \nA: 1 cat * 4 = 4\n#### 4\n", "duplicate"),  # up to whitespace
    ],
)
def test_invalid_generations_are_rejected_with_their_reason(text: str, reason: str) -> None:
    item, verdict = parse_generated(
        text, _seed("legs: 1 cat"), item_id="g", known_questions={"legs: 1 cat"}
    )
    assert item is None and verdict == reason


def test_option_items_need_their_options_line() -> None:
    seed = _seed("Which is larger?", "option", ("2", "3"))
    text = "Which is smaller?\nOptions: (A) 5 (B) 1 (C) 9\nA: 1 < 5\n#### B\n"
    item, verdict = parse_generated(text, seed, item_id="g", known_questions=set())
    assert verdict == "valid" and item is not None
    assert item.choices == ("5", "1", "9") and item.answer == "B"
    assert item.question == "Which is smaller?"
    missing = "Which is smaller?\nA: 1 < 5\n#### B\n"
    assert parse_generated(missing, seed, item_id="g", known_questions=set()) == (
        None,
        "no_choices",
    )


# ----------------------------------------------------------------------------- keeping
def test_keep_top_respects_the_fraction_and_keeps_the_best() -> None:
    rng = np.random.default_rng(3)
    for n in range(1, 12):
        scores = rng.normal(size=n).tolist()
        for fraction in (0.1, 0.25, 0.5, 0.9, 1.0):
            kept = keep_top(scores, fraction)
            assert len(kept) == math.ceil(fraction * n)
            dropped = [scores[i] for i in range(n) if i not in kept]
            assert not dropped or min(scores[i] for i in kept) >= max(dropped)
    assert keep_top([], 0.5) == []


def test_mean_scores_needs_every_item_from_every_client() -> None:
    replies = {
        0: ItemScores(item_ids=["a", "b"], scores=[1.0, 0.0]),
        1: ItemScores(item_ids=["b", "a"], scores=[1.0, 0.5]),
    }
    np.testing.assert_allclose(mean_scores(replies, ["a", "b"]), [0.75, 0.5])
    with pytest.raises(PayloadError, match="client 1 scored 1 of 2"):
        mean_scores({1: ItemScores(item_ids=["a"], scores=[1.0])}, ["a", "b"])


def _generated(n: int, seeds: list[ReasoningItem]) -> list[ReasoningItem]:
    return [
        ReasoningItem(
            id=f"gen-{k}",
            domain="leg_counting",
            question=f"legs: {k + 2} cat",
            answer=str(4 * (k + 2)),
            answer_kind="numeric",
            rationale=f"{k + 2} cat * 4 = {4 * (k + 2)}",
            source="generated",
            meta={"seed_id": seeds[k % len(seeds)].id},
        )
        for k in range(n)
    ]


def test_server_keeps_the_top_fraction_and_steers_the_seeds(writer_dir: Path) -> None:
    seeds = [_seed("legs: 1 cat"), _seed("legs: 1 dog")]
    server = ServerParty(name="server", model=load_model_dir(writer_dir), public_pool=seeds)
    host = CrossLM(
        CrossLMConfig(keep_fraction=0.4, steer_boost=2.0, generate_per_round=8, max_new_tokens=24),
        ExperimentConfig().train,
        False,
    )
    items = _generated(5, seeds)
    state = host_state(server, CrossLMServerState)
    state.generated = items
    state.seed_weights = {s.id: 1.0 for s in seeds}
    client_a = [0.9, 0.1, 0.8, 0.2, 0.3]
    client_b = [0.7, 0.2, 0.6, 0.1, 0.9]  # means: 0.8, 0.15, 0.7, 0.15, 0.6
    replies = {
        0: ItemScores(item_ids=[it.id for it in items], scores=client_a),
        1: ItemScores(item_ids=[it.id for it in items], scores=client_b),
    }
    host.receive_generate(server, replies, round_idx=1)
    kept_ids = [it.id for it in state.kept]
    assert kept_ids == ["gen-0", "gen-2"]  # ceil(0.4 * 5) = 2 best by mean score
    paths = state.llm_paths
    assert paths is not None
    assert paths.item_ids == kept_ids and paths.paths == [gold_path(it) for it in items[::2][:2]]
    assert len(paths.logprobs) == 2 and all(lp < 0 for lp in paths.logprobs)
    # Both kept items came from seed 0 (k % 2 == 0): it is now 5x as likely as seed 1.
    assert state.seed_weights == {seeds[0].id: 5.0, seeds[1].id: 1.0}

    # The next round samples seeds in proportion to those weights.
    state.seed_weights = {seeds[0].id: 1.0, seeds[1].id: 1e9}
    prompts: list[str] = []
    original = server.model.generate_paths

    def spy(batch: list[str], **kwargs: object) -> list[str]:
        prompts.extend(batch)
        return original(batch, **kwargs)  # type: ignore[arg-type]

    server.model.generate_paths = spy  # type: ignore[method-assign]
    host._generate(server, round_idx=2)
    assert len(prompts) == host.config.generate_per_round
    assert set(prompts) == {"Q: legs: "}
    counters = server.log.counters
    outcomes = sum(counters[f"generated_{r}"] for r in ("valid", "no_question", "no_answer"))
    outcomes += counters["generated_duplicate"] + counters["generated_no_choices"]
    outcomes += counters["generated_reserved"]
    assert counters["generated"] == outcomes == host.config.generate_per_round


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_generated_questions_reserved_for_evaluation_are_dropped(
    writer_dir: Path, share: float
) -> None:
    seeds = [_seed("legs: 1 cat")]
    server = ServerParty(name="server", model=load_model_dir(writer_dir), public_pool=seeds)
    config = CrossLMConfig(generate_per_round=4, max_new_tokens=24, reserved_share=share)
    host = CrossLM(config, ExperimentConfig().train, False)

    def write(batch: list[str], **kwargs: object) -> list[str]:
        return [
            f"{k + 2} cow\nA: {k + 2} cow * 4 = {4 * (k + 2)}\n#### {4 * (k + 2)}\n"
            for k in range(len(batch))
        ]

    server.model.generate_paths = write  # type: ignore[method-assign]
    items = host._generate(server, round_idx=1)
    reserved = server.log.counters["generated_reserved"]
    assert (len(items), reserved) == ((4, 0) if share == 0.0 else (0, 4))


# ----------------------------------------------------------------------------- one round
def _config(tmp_path: Path, writer: Path, lada: bool) -> ExperimentConfig:
    return validate(
        {
            "name": "crosslm-test",
            "rounds": 1,
            "output_dir": str(tmp_path),
            "device": "cpu",
            "data": {"split": {"n_public": 16, "n_clients": 2, "n_train": 12, "n_test": 4}},
            "llm": {"preset": str(writer), "pretrain": None},
            "train": {
                "batch_size": 8,
                "max_new_tokens": 8,
                "warmup_local_epochs": 0,
                "generation_batch_size": 32,
            },
            # At most 8 of the 16 generations are kept: one pass at batch 8; two server steps
            # give each client pair one (a pair without a step sits the round out).
            "budget": {"client_steps": 1, "server_steps": 2},
            "host": {
                "name": "crosslm",
                "generate_per_round": 16,
                "max_new_tokens": 48,
                "keep_fraction": 0.5,
                # Both feedback kinds run once across the two rounds below.
                "score": "agreement" if lada else "likelihood",
            },
            "lada_enabled": lada,
            "lada": {
                "hidden_size": 16,
                "n_clusters": 2,
                "kmeans_n_init": 1,
                "epochs_per_round": 1,
                "negative_max_new_tokens": 8,
            },
        }
    )


@pytest.mark.parametrize("lada", [False, True], ids=["alone", "lada"])
def test_one_round_in_process(tmp_path: Path, writer_dir: Path, lada: bool) -> None:
    runner = Runner(_config(tmp_path, writer_dir, lada), audit=True, evaluate_llm=False)
    fed = runner.federation
    llm_before = {k: v.clone() for k, v in fed.server.model.model.state_dict().items()}

    result = runner.run()

    for name in ("config.toml", "metrics.jsonl", "summary.json"):
        assert (result.run_dir / name).exists()
    llm_after = fed.server.model.model.state_dict()
    assert any(not torch.equal(llm_before[k], llm_after[k]) for k in llm_before)

    record = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").open()][1]
    kinds = set(record["traffic"]["bytes"])
    reply = "train/up/public_paths" if lada else "train/up/empty"
    expected = {"generate/down/public_items", "generate/up/item_scores", "train/down/public_paths"}
    assert expected | {reply} <= kinds

    counters = record["server_log"]["counters"]
    assert counters["generated"] == 16
    valid = counters["generated_valid"]
    assert valid >= 1
    assert counters["kept"] == math.ceil(0.5 * valid)
    for client in fed.clients:
        received = host_state(client, CrossLMClientState).generated_by_id.values()
        assert len(received) == valid
        assert {it.source for it in received} == {"generated"}
    if lada:
        pairs = {
            json.loads(line)["filter"] for line in (result.run_dir / "selections.jsonl").open()
        }
        assert {"llm->slm_0", "slm_0->llm"} <= pairs
    else:
        assert "self_training" in record["server_log"]["losses"]

    assert result.audit.leaks(private_texts(fed)) == []
