"""LadaPlugin on a tiny real model: the four hooks, rewards by hand, gate, state round trip."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from lada.method.config import LadaConfig
from lada.method.plugin import Candidate, LadaPlugin, pair_name
from lada.method.rewards import batch_value, item_term, loss_drop, minmax, mix, relative_decrease
from lada.models.presets import load_model
from lada.models.wrapper import ReasoningModel
from lada.tasks.item import ReasoningItem
from lada.tasks.prompts import gold_path, render_path, render_prompt

PAIR = pair_name("llm", "slm_0")


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    # Tiny models: thread hand-offs cost more than they save on a shared 2-core machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _items(n: int) -> list[ReasoningItem]:
    items = []
    for i in range(n):
        a, b = 2 + i % 7, 1 + i % 5
        add = i % 2 == 0
        answer = a + b if add else a - b
        sign = "+" if add else "-"
        items.append(
            ReasoningItem(
                id=f"{'add' if add else 'sub'}-{i}",
                domain="add" if add else "sub",
                question=f"What is {a} {sign} {b}?",
                answer=str(answer),
                answer_kind="numeric",
                rationale=f"{a} {sign} {b} = {answer}",
            )
        )
    return items


def _candidates(items: list[ReasoningItem]) -> list[Candidate]:
    """Every third sender path is wrong; sender log-probs are made-up numbers."""
    return [
        Candidate(
            item=item,
            path=render_path(item.rationale, item.answer if k % 3 else str(int(item.answer) + 1)),
            sender_logprob=-10.0 - k,
        )
        for k, item in enumerate(items)
    ]


def _config(**overrides: object) -> LadaConfig:
    base: dict[str, object] = {
        "hidden_size": 32,
        "lr": 1e-3,
        "n_clusters": 2,
        "budget": 6,
        "negative_max_new_tokens": 12,
        "inference_batch_size": 8,
    }
    return LadaConfig(**(base | overrides))


@pytest.fixture
def receiver() -> ReasoningModel:
    return load_model("tiny-1m", device="cpu", seed=0, learning_rate=3e-3)


def _own_paths(correct_ids: set[str]):  # type: ignore[no-untyped-def]
    """A stand-in for `generate_paths`: correct answers for the given items, wrong otherwise."""
    by_prompt = {render_prompt(it): it for it in _items(24)}

    def generate(prompts, **kwargs):  # type: ignore[no-untyped-def]
        paths = []
        for prompt in prompts:
            item = by_prompt[prompt]
            answer = int(item.answer) + (0 if item.id in correct_ids else 5)
            paths.append(render_path("I think", str(answer)))
        return paths

    return generate


@pytest.mark.parametrize("alpha", [0.5, 0.2])  # 0.2: alpha and 1 - alpha swapped would show
def test_four_hooks_make_a_round_and_rewards_match_hand_computation(
    receiver: ReasoningModel, alpha: float
) -> None:
    items = _items(12)
    plugin = LadaPlugin(_config(alpha=alpha))
    local = [render_prompt(it) + gold_path(it) for it in items if it.domain == "sub"]

    selection = plugin.select(
        receiver, _candidates(items), pair=PAIR, local_texts_or_embedding=local, round_idx=0
    )
    assert selection.strategy == "round1_nearest_clusters"
    assert len(selection) == 6 and selection.n_offered == 12
    assert selection.features.shape[0] == 6

    batch_set = plugin.prepare(receiver, selection)  # real generation by the receiver
    receiver_at_start = receiver.clone()
    report = batch_set.report
    assert report.n_pairs + report.skipped == len(selection) == len(batch_set)
    positives = [p.positive for p in batch_set.pairs]
    negatives = [p.negative for p in batch_set.pairs]
    prompts = [p.prompt for p in batch_set.pairs]
    expected_ref = receiver.sequence_logprobs(prompts * 2, positives + negatives)
    assert batch_set.ref.positive.numpy() == pytest.approx(expected_ref[:6].numpy(), rel=1e-5)
    assert batch_set.ref.negative.numpy() == pytest.approx(expected_ref[6:].numpy(), rel=1e-5)
    losses_before = -receiver.sequence_logprobs(prompts, positives, normalize=True).numpy()
    assert batch_set.ref_losses == pytest.approx(losses_before, rel=1e-5)

    history = plugin.fit(receiver, batch_set, epochs=2, batch_size=4, seed=0)
    assert len(history) == 4 and all(np.isfinite(h["total"]) for h in history)

    rewards = plugin.observe(receiver, selection, batch_set)
    losses_after = -receiver.sequence_logprobs(prompts, positives, normalize=True).numpy()
    r_batch = relative_decrease(batch_value(losses_before), batch_value(losses_after))
    assert r_batch > 0  # training on the items lowered the receiver's loss on them
    assert rewards.r_batch == pytest.approx(r_batch, rel=1e-4)
    # gap = log p_sender(sender path) - log p_receiver(sender path) at the start of the round
    kept = [selection.candidates[k] for k in batch_set.kept]
    sender_lp = np.array([c.sender_logprob for c in kept])
    receiver_lp = receiver_at_start.sequence_logprobs(prompts, [c.path for c in kept]).numpy()
    assert batch_set.gap is not None
    assert batch_set.gap == pytest.approx(sender_lp - receiver_lp, rel=1e-5)
    assert rewards.rewards == pytest.approx(mix(item_term(batch_set.gap), r_batch, alpha), rel=1e-4)
    by_hand = alpha / (1 + np.exp(-item_term(batch_set.gap))) + (1 - alpha) / (1 + np.exp(-r_batch))
    assert rewards.rewards == pytest.approx(by_hand, rel=1e-4)
    assert rewards.item_ids == [p.item.id for p in batch_set.pairs]

    filt = plugin.filter(PAIR)
    assert filt.is_trained and filt.n_observed == len(batch_set)
    second = plugin.select(receiver, _candidates(items), pair=PAIR, round_idx=1)
    assert second.strategy == "scored"
    assert second.scores is not None and second.scores.shape == (12,)


def test_prepare_counts_each_gate_case(receiver: ReasoningModel) -> None:
    items = _items(6)
    plugin = LadaPlugin(_config(budget=None, selection_mode="all"))
    selection = plugin.select(receiver, _candidates(items), pair=PAIR)
    assert selection.strategy == "all" and len(selection) == 6
    # sender wrong on items 0 and 3; the receiver is right on 0 and 1
    receiver.generate_paths = _own_paths({"add-0", "sub-1"})  # type: ignore[method-assign]
    batch_set = plugin.prepare(receiver, selection)
    assert batch_set.report.to_dict() == {
        "sender_correct": 4,
        "receiver_swapped": 1,
        "gold_fallback": 1,
        "skipped": 0,
        "ungated": 0,
        "n_pairs": 6,
    }
    sources = {p.item.id: p.positive_source for p in batch_set.pairs}
    assert sources["add-0"] == "receiver" and sources["sub-3"] == "gold"

    skipping = LadaPlugin(_config(budget=None, selection_mode="all", no_positive="skip"))
    skipped = skipping.prepare(receiver, skipping.select(receiver, _candidates(items), pair=PAIR))
    assert skipped.report.skipped == 1 and len(skipped) == 5
    assert skipped.kept.tolist() == [0, 1, 2, 4, 5]


def test_loss_drop_and_margin_rewards(receiver: ReasoningModel) -> None:
    items = _items(8)
    receiver.generate_paths = _own_paths(set())  # type: ignore[method-assign]
    for kind in ("loss_drop", "margin"):
        model = receiver.clone()
        model.generate_paths = receiver.generate_paths  # type: ignore[method-assign]
        plugin = LadaPlugin(_config(item_reward=kind, budget=None, selection_mode="all"))
        selection = plugin.select(model, _candidates(items), pair=PAIR)
        batch_set = plugin.prepare(model, selection)
        plugin.fit(model, batch_set, epochs=2, batch_size=4, seed=0)
        result = plugin.observe(model, selection, batch_set)
        prompts = [p.prompt for p in batch_set.pairs]
        pos = [p.positive for p in batch_set.pairs]
        neg = [p.negative for p in batch_set.pairs]
        if kind == "loss_drop":
            after = -model.sequence_logprobs(prompts, pos, normalize=True).numpy()
            raw = loss_drop(batch_set.ref_losses, after)
        else:
            after = model.sequence_logprobs(prompts * 2, pos + neg).double().numpy()
            n = len(prompts)
            raw = (after[:n] - batch_set.ref.positive.numpy()) - (
                after[n:] - batch_set.ref.negative.numpy()
            )
            assert raw.mean() > 0  # contrastive training moved towards the positives
        assert result.r_item == pytest.approx(minmax(raw), abs=1e-4)


def test_gap_reward_needs_sender_logprobs(receiver: ReasoningModel) -> None:
    items = _items(4)
    receiver.generate_paths = _own_paths(set())  # type: ignore[method-assign]
    plugin = LadaPlugin(_config(selection_mode="all"))
    bare = [Candidate(c.item, c.path) for c in _candidates(items)]
    selection = plugin.select(receiver, bare, pair=PAIR)
    with pytest.raises(ValueError, match="sender_logprob"):
        plugin.prepare(receiver, selection)


def test_previous_round_baseline(receiver: ReasoningModel) -> None:
    items = _items(8)
    receiver.generate_paths = _own_paths(set())  # type: ignore[method-assign]
    plugin = LadaPlugin(_config(batch_reward_baseline="previous_round", selection_mode="all"))
    results = []
    for round_idx in range(2):
        selection = plugin.select(receiver, _candidates(items), pair=PAIR, round_idx=round_idx)
        batch_set = plugin.prepare(receiver, selection)
        plugin.fit(receiver, batch_set, epochs=1, batch_size=4, seed=round_idx)
        results.append(plugin.observe(receiver, selection, batch_set))
    first, second = results
    assert first.r_batch == pytest.approx(relative_decrease(first.b_before, first.b_after))
    assert second.r_batch == pytest.approx(relative_decrease(first.b_after, second.b_after))
    assert plugin.previous_b[PAIR] == pytest.approx(second.b_after)


def test_local_centroid_may_be_given_as_an_embedding(receiver: ReasoningModel) -> None:
    items = _items(12)
    local_texts = [render_prompt(it) + gold_path(it) for it in items if it.domain == "add"]
    by_texts = LadaPlugin(_config()).select(
        receiver, _candidates(items), pair=PAIR, local_texts_or_embedding=local_texts
    )
    centroid = receiver.embed(local_texts).mean(axis=0)
    by_centroid = LadaPlugin(_config()).select(
        receiver, _candidates(items), pair=PAIR, local_texts_or_embedding=centroid
    )
    assert by_texts.indices.tolist() == by_centroid.indices.tolist()


def test_plugin_state_round_trips(receiver: ReasoningModel, tmp_path: Path) -> None:
    items = _items(12)
    receiver.generate_paths = _own_paths(set())  # type: ignore[method-assign]
    plugin = LadaPlugin(_config())
    selection = plugin.select(receiver, _candidates(items), pair=PAIR)
    batch_set = plugin.prepare(receiver, selection)
    plugin.fit(receiver, batch_set, epochs=1, batch_size=4, seed=0)
    plugin.observe(receiver, selection, batch_set)
    plugin.save(tmp_path / "lada.pt")
    restored = LadaPlugin.load(tmp_path / "lada.pt")
    again = restored.select(receiver, _candidates(items), pair=PAIR, round_idx=1)
    first = plugin.select(receiver, _candidates(items), pair=PAIR, round_idx=1)
    assert again.scores is not None and first.scores is not None
    assert np.array_equal(again.scores, first.scores)
    assert again.indices.tolist() == first.indices.tolist()
    assert restored.previous_b == plugin.previous_b
    with pytest.raises(ValueError, match="config"):
        LadaPlugin(_config(alpha=0.3)).load_state_dict(plugin.state_dict())


def test_one_filter_per_pair_and_empty_offers(receiver: ReasoningModel) -> None:
    plugin = LadaPlugin(_config())
    assert plugin.filter("slm_0->llm") is plugin.filter("slm_0->llm")
    assert plugin.filter("slm_0->llm") is not plugin.filter("slm_1->llm")
    empty = plugin.select(receiver, [], pair="slm_0->llm")
    assert len(empty) == 0
    batch_set = plugin.prepare(receiver, empty)
    assert len(batch_set) == 0
    assert len(plugin.observe(receiver, empty, batch_set).rewards) == 0


def test_prepare_writes_own_paths_to_the_hosts_limit_unless_overridden(
    receiver: ReasoningModel,
) -> None:
    assert LadaConfig().negative_max_new_tokens is None
    items = _items(4)
    caps: list[int] = []
    own = _own_paths(set())

    def generate(prompts, **kwargs):  # type: ignore[no-untyped-def]
        caps.append(kwargs["max_new_tokens"])
        return own(prompts)

    receiver.generate_paths = generate  # type: ignore[method-assign]
    same = LadaPlugin(_config(budget=None, selection_mode="all", negative_max_new_tokens=None))
    selection = same.select(receiver, _candidates(items), pair=PAIR)
    same.prepare(receiver, selection, max_new_tokens=176)
    override = LadaPlugin(_config(budget=None, selection_mode="all", negative_max_new_tokens=20))
    override.prepare(receiver, selection, max_new_tokens=176)
    assert caps == [176, 20]
    with pytest.raises(ValueError, match="negative_max_new_tokens"):
        same.prepare(receiver, selection)


def test_distillation_batches_group_pairs_of_similar_length() -> None:
    """Each pair once per pass; within one pool of batches, a batch holds neighbours in length
    (positives and negatives share one padded forward, so random batches waste a third of it)."""
    from lada.method.pairs import DistillPair
    from lada.method.plugin import DistillBatchSet, PairLogprobs

    items = _items(32)
    rng = np.random.default_rng(3)
    lengths = rng.permutation(np.arange(10, 10 + 32 * 5, 5))
    pairs = [
        DistillPair(it, "Q: x\nA: ", "y" * int(n), "z" * int(n // 2), "sender")
        for it, n in zip(items, lengths, strict=True)
    ]
    zeros = torch.zeros(len(pairs), dtype=torch.float64)
    batch_set = DistillBatchSet(
        PAIR, 1, pairs, np.arange(len(pairs)), PairLogprobs(zeros, zeros), np.zeros(32), None
    )
    seen: list[str] = []
    for batch in batch_set.batches(4, seed=0):  # 8 batches: one pool, sorted as a whole
        widths = sorted(len(p) for p in batch.positives)
        seen.extend(batch.positives)
        rank = sorted(int(n) for n in lengths)
        lo = rank.index(widths[0])
        assert widths == rank[lo : lo + 4], "a batch mixes lengths from across the pool"
    assert sorted(seen) == sorted(p.positive for p in pairs)
    first = [b.positives for b in batch_set.batches(4, seed=0)]
    assert first == [b.positives for b in batch_set.batches(4, seed=0)]  # seeded
    assert first != [b.positives for b in batch_set.batches(4, seed=1)]  # reshuffled per pass
