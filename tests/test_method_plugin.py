"""LadaPlugin on a tiny real model: the four hooks, rewards by hand, gate, state round trip."""

from __future__ import annotations

import copy
import pickle
import re
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lada.method.config import LadaConfig
from lada.method.contrastive import LossParts, PairLogprobs
from lada.method.filter import FilterChoice, FilterFit
from lada.method.pairs import DistillPair
from lada.method.plugin import (
    EMPTY_SELECTION_COUNTER,
    NONFINITE_REWARD_COUNTER,
    Candidate,
    DistillBatchSet,
    EmptySelectionError,
    LadaPlugin,
    RoundRewards,
    Selection,
    _finite_mean,
    negative_token_cap,
    pair_name,
)
from lada.method.rewards import batch_value, item_term, loss_drop, minmax, mix, relative_decrease
from lada.method.rho_loss import IrreducibleLossModel
from lada.method.selection import random_select
from lada.models.guards import NonFiniteLossError
from lada.models.presets import load_model
from lada.models.training import TrainUsage
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


# ------------------------------------------------------------------ units, without a network
# The tests below drive the hooks with `_TableReceiver`, a receiver whose log-probs come from a
# table, so each expected number can be worked out by hand from that table.


class _TableReceiver:
    """A receiver without a network: path scores from a table, embeddings from a seeded draw.

    `table[path] = (summed log-prob, token count)`; a path missing from it scores
    (-len(path) / 10, len(path)). Calls are recorded so a test can see what was asked.
    """

    name = "table"

    def __init__(self, table: dict[str, tuple[float, float]] | None = None) -> None:
        self.table = dict(table or {})
        self.scored: list[str] = []
        self.embedded: list[list[str]] = []
        self.generated: list[dict[str, object]] = []
        self.steps: list[float] = []

    def score_paths(self, prompts, paths, *, grad=False):  # type: ignore[no-untyped-def]
        self.scored.extend(paths)
        rows = [self.table.get(p, (-len(p) / 10, float(len(p)))) for p in paths]
        return SimpleNamespace(
            total=torch.tensor([r[0] for r in rows], dtype=torch.float64),
            n_tokens=torch.tensor([r[1] for r in rows], dtype=torch.float64),
        )

    def embed(self, texts, *, batch_size=32):  # type: ignore[no-untyped-def]
        self.embedded.append(list(texts))
        return np.stack([_vector(t) for t in texts])

    def generate_paths(self, prompts, **kwargs):  # type: ignore[no-untyped-def]
        self.generated.append(kwargs)
        return [render_path("I think", "9999") for _ in prompts]  # wrong for every item

    def pack(self, prompts, paths):  # type: ignore[no-untyped-def]
        lengths = [len(a) + len(b) for a, b in zip(prompts, paths, strict=True)]
        width = max(lengths)
        attention = torch.tensor([[1] * n + [0] * (width - n) for n in lengths])
        return attention.clone(), attention, attention.clone()

    def train_step(self, loss: torch.Tensor) -> float:
        self.steps.append(float(loss))
        return float(loss)

    def clone(self) -> _TableReceiver:
        return copy.deepcopy(self)


def _vector(text: str) -> np.ndarray:
    return np.random.default_rng(zlib.crc32(text.encode())).normal(size=4)


class _Counts(dict[str, float]):
    """A round log's counters."""

    def count(self, name: str, value: float = 1.0) -> None:
        self[name] = self.get(name, 0.0) + value


def _table_round(
    before: list[float],
    after: list[float],
    *,
    gap: list[float] | None = None,
    kept: list[int] | None = None,
    round_idx: int = 2,
) -> tuple[_TableReceiver, Selection, DistillBatchSet]:
    """A trained round: per-item loss `before` (from prepare) and `after` (the table's).

    The selection offers one more candidate than there are pairs when `kept` leaves one out.
    """
    n = len(before)
    kept = list(range(n)) if kept is None else kept
    n_selected = max(kept, default=-1) + 1
    items = _items(n_selected)
    candidates = _candidates(items)
    rng = np.random.default_rng(0)
    selection = Selection(
        PAIR,
        round_idx,
        candidates,
        np.arange(n_selected),
        rng.normal(size=(n_selected, 3)).astype(np.float32),
        None,
        "scored",
        n_selected,
    )
    pairs = [
        DistillPair(items[k], render_prompt(items[k]), f" pos {k}", f" neg {k}", "sender")
        for k in kept
    ]
    zeros = torch.zeros(n, dtype=torch.float64)
    batch_set = DistillBatchSet(
        PAIR,
        round_idx,
        pairs,
        np.asarray(kept, dtype=np.int64),
        PairLogprobs(zeros, zeros),
        np.asarray(before, dtype=np.float64),
        None if gap is None else np.asarray(gap, dtype=np.float64),
    )
    # after training: token-mean NLL `after[j]` over 4 tokens
    table = {p.positive: (-4.0 * a, 4.0) for p, a in zip(pairs, after, strict=True)}
    return _TableReceiver(table), selection, batch_set


def _sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def _by_hand(
    before: np.ndarray,
    after: np.ndarray,
    raw: np.ndarray,
    alpha: float,
    base: float | None = None,
) -> tuple[np.ndarray, np.ndarray, float, float, float]:
    """(rewards, r_item, r_batch, B before, B after) by the formulas of lada.method.rewards."""
    b_before, b_after = float(np.mean(np.exp(before))), float(np.mean(np.exp(after)))
    previous = b_before if base is None else base
    r_batch = (previous - b_after) / max(previous, b_after)
    spread = raw.max() - raw.min()
    r_item = (raw - raw.min()) / spread if spread > 0 else np.full_like(raw, 0.5)
    rewards = alpha * _sigmoid(r_item) + (1 - alpha) * _sigmoid(r_batch)
    return rewards, r_item, r_batch, b_before, b_after


def test_observe_rewards_the_loss_drop_and_teaches_the_filter_the_kept_rows() -> None:
    before, after = [2.0, 1.5, 1.0, 0.5], [1.0, 1.4, 1.2, 0.1]
    receiver, selection, batch_set = _table_round(before, after, kept=[0, 2, 3, 4])
    plugin = LadaPlugin(_config(item_reward="loss_drop", alpha=0.3))
    log = _Counts()
    result = plugin.observe(receiver, selection, batch_set, log=log)

    b, a = np.array(before), np.array(after)
    rewards, r_item, r_batch, b_before, b_after = _by_hand(b, a, b - a, 0.3)
    assert (result.pair, result.round_idx) == (PAIR, 2)
    assert result.item_ids == [selection.candidates[k].item.id for k in (0, 2, 3, 4)]
    assert result.r_item == pytest.approx(r_item)
    assert result.rewards == pytest.approx(rewards)
    assert result.r_batch == pytest.approx(r_batch)
    assert (result.b_before, result.b_after) == (pytest.approx(b_before), pytest.approx(b_after))
    assert result.nonfinite_skipped == 0 and log == {}
    filt = plugin.filter(PAIR)
    assert isinstance(result.fit, FilterFit) and result.fit.n_memory == 4 == filt.n_observed
    # the filter learned from the features of the items that got a pair (candidate 1 did not)
    assert np.array_equal(filt.memory_features, selection.features[[0, 2, 3, 4]])
    assert filt.memory_rewards == pytest.approx(rewards)
    assert plugin.previous_b == {PAIR: pytest.approx(b_after)}


def test_observe_sets_aside_items_with_a_non_finite_value_of_any_column() -> None:
    """'gap' reads the gap column, and every kind the losses before and after: a NaN in any of
    them leaves its item out of B, r_item and the filter update, counted in the round log."""
    nan = float("nan")
    before = [nan, 1.0, 1.2, 0.8, 1.0, 0.7]
    after = [0.9, nan, 1.0, 0.6, 0.5, 0.6]
    gap = [1.0, 2.0, nan, -1.0, 3.0, 0.5]
    receiver, selection, batch_set = _table_round(before, after, gap=gap)
    plugin = LadaPlugin(_config(item_reward="gap", alpha=0.6))
    log = _Counts()
    result = plugin.observe(receiver, selection, batch_set, log=log)

    good = [3, 4, 5]
    b, a, g = (np.array(v)[good] for v in (before, after, gap))
    rewards, r_item, r_batch, b_before, b_after = _by_hand(b, a, g, 0.6)
    assert result.item_ids == [selection.candidates[k].item.id for k in good]
    assert result.r_item == pytest.approx(r_item) and result.rewards == pytest.approx(rewards)
    assert result.r_batch == pytest.approx(r_batch)
    assert result.b_before == pytest.approx(b_before)
    assert result.nonfinite_skipped == 3 and log == {NONFINITE_REWARD_COUNTER: 3}
    assert plugin.filter(PAIR).n_observed == 3
    assert result.summary()["nonfinite_skipped"] == 3.0


def test_observe_without_one_finite_item_learns_nothing() -> None:
    nan = float("nan")
    receiver, selection, batch_set = _table_round([1.0, nan], [nan, 1.0], round_idx=5)
    plugin = LadaPlugin(_config(item_reward="loss_drop"))
    log = _Counts()
    result = plugin.observe(receiver, selection, batch_set, log=log)
    assert (result.pair, result.round_idx, result.item_ids) == (PAIR, 5, [])
    assert result.rewards.shape == (0,) and result.r_item.shape == (0,)
    assert np.isnan(result.r_batch) and np.isnan(result.b_before) and np.isnan(result.b_after)
    assert result.fit is None and result.nonfinite_skipped == 2
    assert log == {NONFINITE_REWARD_COUNTER: 2}
    assert not plugin.filter(PAIR).is_trained and plugin.previous_b == {}


def test_observe_sets_aside_a_round_whose_batch_term_overflows() -> None:
    """exp(800) overflows, so B before is inf and r_batch = inf / inf is NaN: the round is
    counted and returned without rewards, the filter and the baseline untouched."""
    before, after = [800.0, 1.0], [1.0, 0.5]
    receiver, selection, batch_set = _table_round(before, after, round_idx=4)
    plugin = LadaPlugin(_config(item_reward="loss_drop"))
    log = _Counts()
    with np.errstate(over="ignore"):
        result = plugin.observe(receiver, selection, batch_set, log=log)
    assert (result.pair, result.round_idx, result.item_ids) == (PAIR, 4, [])
    assert result.rewards.shape == (0,) and result.r_item.shape == (0,)
    assert np.isnan(result.r_batch) and result.b_before == float("inf")
    assert result.b_after == pytest.approx(float(np.mean(np.exp(after))))
    assert result.fit is None and result.nonfinite_skipped == 1
    assert log == {NONFINITE_REWARD_COUNTER: 1}
    assert not plugin.filter(PAIR).is_trained and plugin.previous_b == {}


def test_observe_stops_past_the_skip_limit_naming_what_was_not_finite() -> None:
    nan = float("nan")
    plugin = LadaPlugin(_config(item_reward="loss_drop", max_nonfinite_skips=0))
    receiver, selection, batch_set = _table_round([1.0, 1.0], [nan, 0.5])
    with pytest.raises(NonFiniteLossError) as error:
        plugin.observe(receiver, selection, batch_set)
    assert error.value.where == f"reward of item {batch_set.pairs[0].item.id!r} ({PAIR})"
    receiver, selection, batch_set = _table_round([800.0, 1.0], [1.0, 0.5])
    with np.errstate(over="ignore"), pytest.raises(NonFiniteLossError) as error:
        plugin.observe(receiver, selection, batch_set)
    assert error.value.where == f"batch reward term ({PAIR})"


def test_observe_of_no_pairs_and_of_one_pair() -> None:
    plugin = LadaPlugin(_config(item_reward="loss_drop", alpha=0.5))
    receiver, selection, batch_set = _table_round([], [], round_idx=3)
    empty = plugin.observe(receiver, selection, batch_set)
    assert (empty.pair, empty.round_idx, empty.item_ids) == (PAIR, 3, [])
    assert empty.rewards.shape == (0,) and empty.r_item.shape == (0,)
    assert empty.r_batch == 0.0 and np.isnan(empty.b_before) and np.isnan(empty.b_after)
    assert empty.fit is None and empty.nonfinite_skipped == 0
    assert receiver.scored == []  # nothing to measure

    receiver, selection, batch_set = _table_round([1.0], [0.5])
    one = plugin.observe(receiver, selection, batch_set)
    r_batch = (np.e - np.exp(0.5)) / np.e
    assert one.r_item.tolist() == [0.5]  # a single item has no spread
    assert one.rewards == pytest.approx([float(0.5 * _sigmoid(0.5) + 0.5 * _sigmoid(r_batch))])


@pytest.mark.parametrize("normalize", [False, True])
def test_margin_reward_scores_both_paths_again_after_training(normalize: bool) -> None:
    """'margin' is (pi(y+) - ref(y+)) - (pi(y-) - ref(y-)), the log-probs after training read
    as sums or, with `normalize_logprobs`, per-token means, as the references were."""
    before, after = [1.0, 1.2, 0.8], [0.9, 1.0, 0.9]
    receiver, selection, batch_set = _table_round(before, after)
    ref_pos, ref_neg = np.array([-6.0, -5.0, -7.0]), np.array([-4.0, -8.0, -6.0])
    batch_set.ref = PairLogprobs(torch.tensor(ref_pos), torch.tensor(ref_neg))
    receiver.table |= {p.negative: (-10.0 - k, 5.0) for k, p in enumerate(batch_set.pairs)}
    plugin = LadaPlugin(_config(item_reward="margin", normalize_logprobs=normalize))
    result = plugin.observe(receiver, selection, batch_set)

    def logprob(path: str) -> float:
        total, count = receiver.table[path]
        return total / count if normalize else total

    positives = [p.positive for p in batch_set.pairs]
    negatives = [p.negative for p in batch_set.pairs]
    assert receiver.scored == positives + negatives  # one pass over both
    raw = (np.array([logprob(p) for p in positives]) - ref_pos) - (
        np.array([logprob(p) for p in negatives]) - ref_neg
    )
    b, a = np.array(before), np.array(after)
    rewards, r_item, r_batch, _, _ = _by_hand(b, a, raw, plugin.config.alpha)
    assert result.r_item == pytest.approx(r_item) and result.rewards == pytest.approx(rewards)
    assert result.r_batch == pytest.approx(r_batch)


@pytest.mark.parametrize("baseline", ["same_set", "previous_round"])
def test_batch_reward_baseline_reads_the_pairs_previous_b_only_when_asked(baseline: str) -> None:
    before, after = [1.0, 2.0], [0.5, 1.5]
    receiver, selection, batch_set = _table_round(before, after)
    plugin = LadaPlugin(_config(item_reward="loss_drop", batch_reward_baseline=baseline))
    plugin.previous_b.update({PAIR: 3.0, "slm_1->llm": 100.0})
    result = plugin.observe(receiver, selection, batch_set)
    b, a = np.array(before), np.array(after)
    base = 3.0 if baseline == "previous_round" else None
    rewards, _, r_batch, _, b_after = _by_hand(b, a, b - a, plugin.config.alpha, base)
    assert result.r_batch == pytest.approx(r_batch) and result.rewards == pytest.approx(rewards)
    assert plugin.previous_b == {PAIR: pytest.approx(b_after), "slm_1->llm": 100.0}

    # A pair seen for the first time compares with its own B before training.
    fresh = LadaPlugin(_config(item_reward="loss_drop", batch_reward_baseline=baseline))
    fresh.previous_b["slm_1->llm"] = 100.0
    first = fresh.observe(*_table_round(before, after))
    assert first.r_batch == pytest.approx(_by_hand(b, a, b - a, 0.5)[2])


def test_round_rewards_summary() -> None:
    fit = FilterFit(0.1, 0.2, 3)
    rewards = RoundRewards(
        PAIR, 1, ["a", "b", "c"], np.array([0.2, 0.4, 0.9]), np.zeros(3), 0.25, 2.0, 1.5, fit, 2
    )
    assert rewards.summary() == {
        "n": 3.0,
        "reward_mean": pytest.approx(0.5),
        "r_batch": 0.25,
        "b_before": 2.0,
        "b_after": 1.5,
        "nonfinite_skipped": 2.0,
    }
    nothing = RoundRewards(PAIR, 1, [], np.zeros(0), np.zeros(0), 0.0, 1.0, 1.0, None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NaN for no rewards, without numpy's empty-mean warning
        summary = nothing.summary()
    assert summary["n"] == 0.0 and np.isnan(summary["reward_mean"])
    assert summary["nonfinite_skipped"] == 0.0


def test_finite_mean_skips_non_finite_entries() -> None:
    assert _finite_mean(np.array([1.0, np.nan, 3.0, np.inf])) == 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NaN for nothing finite, without numpy's warning
        assert np.isnan(_finite_mean(np.array([np.nan, -np.inf])))
        assert np.isnan(_finite_mean(np.zeros(0)))


# ------------------------------------------------------------------ fit
def _pairs_of_lengths(
    prompt_lengths: list[int], path_lengths: list[tuple[int, int]]
) -> DistillBatchSet:
    items = _items(len(prompt_lengths))
    pairs = [
        DistillPair(it, "q" * n, "p" * pos, "n" * neg, "sender")
        for it, n, (pos, neg) in zip(items, prompt_lengths, path_lengths, strict=True)
    ]
    zeros = torch.zeros(len(pairs), dtype=torch.float64)
    return DistillBatchSet(
        PAIR,
        1,
        pairs,
        np.arange(len(pairs)),
        PairLogprobs(zeros, zeros),
        np.zeros(len(pairs)),
        None,
    )


def _recording_loss(
    plugin: LadaPlugin, values: Iterator[float] | None = None
) -> list[tuple[str, ...]]:
    """Replace the plug-in's loss by one that records each batch's positives (and returns
    the next of `values`, else the batch size)."""
    seen: list[tuple[str, ...]] = []

    def loss(receiver, batch):  # type: ignore[no-untyped-def]
        seen.append(batch.positives)
        value = float(len(batch)) if values is None else next(values)
        t = torch.tensor(value)
        return LossParts(total=t, sft=t, cd=torch.tensor(0.0), margin=torch.tensor(0.0))

    plugin.loss = loss  # type: ignore[method-assign]
    return seen


def _six_pairs() -> DistillBatchSet:
    return _pairs_of_lengths([5, 9, 2, 7, 3, 8], [(4, 1), (2, 6), (3, 3), (1, 1), (8, 2), (5, 5)])


def test_fit_epochs_are_reshuffled_passes_seeded_by_seed_plus_pass() -> None:
    plugin, receiver, batch_set = LadaPlugin(_config()), _TableReceiver(), _six_pairs()
    seen = _recording_loss(plugin)
    history = plugin.fit(receiver, batch_set, epochs=2, batch_size=2, seed=7)
    expected = [b.positives for seed in (7, 8) for b in batch_set.batches(2, seed=seed)]
    assert seen == expected and len(history) == 6
    assert receiver.steps == [2.0] * 6 and history[0] == {
        "total": 2.0,
        "sft": 2.0,
        "cd": 0.0,
        "margin": 0.0,
    }


@pytest.mark.parametrize("steps", [2, 3, 5, 7])
def test_fit_takes_exactly_the_steps_asked_for(steps: int) -> None:
    plugin, receiver, batch_set = LadaPlugin(_config()), _TableReceiver(), _six_pairs()
    seen = _recording_loss(plugin)
    history = plugin.fit(receiver, batch_set, steps=steps, batch_size=2, seed=3)
    passes = [b.positives for seed in (3, 4, 5) for b in batch_set.batches(2, seed=seed)]
    assert len(history) == len(receiver.steps) == steps
    assert seen == passes[:steps]  # 3 batches a pass, each further pass reshuffled


def test_fit_of_no_pairs_takes_no_step() -> None:
    plugin, receiver = LadaPlugin(_config()), _TableReceiver()
    _recording_loss(plugin)
    for budget in ({"steps": 4}, {"epochs": 2}):
        assert plugin.fit(receiver, _pairs_of_lengths([], []), batch_size=2, seed=0, **budget) == []
    assert receiver.steps == []
    for wrong in ({}, {"steps": 1, "epochs": 1}):
        with pytest.raises(ValueError, match="^fit: give exactly one of epochs or steps"):
            plugin.fit(receiver, _six_pairs(), batch_size=2, seed=0, **wrong)


def test_fit_skips_a_non_finite_batch_and_goes_on() -> None:
    plugin, receiver, batch_set = LadaPlugin(_config()), _TableReceiver(), _six_pairs()
    seen = _recording_loss(plugin, iter([1.0, float("nan"), 3.0]))
    log = _Counts()
    history = plugin.fit(receiver, batch_set, epochs=1, batch_size=2, seed=0, log=log)
    assert len(seen) == 3 and [h["total"] for h in history] == [1.0, 3.0]
    assert receiver.steps == [1.0, 3.0] and log == {"nonfinite_skipped": 1}

    strict = LadaPlugin(_config(max_nonfinite_skips=0))
    _recording_loss(strict, iter([float("inf")]))
    with pytest.raises(NonFiniteLossError) as error:
        strict.fit(receiver, batch_set, epochs=1, batch_size=2, seed=0)
    assert error.value.where == f"distillation {PAIR}"


@pytest.mark.parametrize("cd_weight", [0.0, 0.5])
def test_fit_counts_the_steps_and_the_tokens_it_trained_on(cd_weight: float) -> None:
    plugin, receiver, batch_set = (
        LadaPlugin(_config(cd_weight=cd_weight)),
        _TableReceiver(),
        _six_pairs(),
    )
    _recording_loss(plugin)
    usage = TrainUsage()
    plugin.fit(receiver, batch_set, epochs=2, batch_size=4, seed=0, usage=usage)
    # each pass sees every pair once: prompt + positive, and prompt + negative with L_CD
    per_pass = sum(len(p.prompt) + len(p.positive) for p in batch_set.pairs)
    if cd_weight > 0:
        per_pass += sum(len(p.prompt) + len(p.negative) for p in batch_set.pairs)
    assert usage.steps == 4 and usage.tokens == 2 * per_pass


# ------------------------------------------------------------------ batches
def test_batches_bucket_by_prompt_plus_the_longer_path() -> None:
    """A pair's length is its prompt plus the longer of its two paths (one padded forward
    holds both): a batch holds neighbours in that length, not in another."""
    rng = np.random.default_rng(7)
    prompts = rng.integers(1, 60, size=16).tolist()
    paths = [tuple(rng.integers(1, 60, size=2).tolist()) for _ in range(16)]
    batch_set = _pairs_of_lengths(prompts, paths)

    def length(prompt: str, positive: str, negative: str) -> int:
        return len(prompt) + max(len(positive), len(negative))

    ranked = sorted(length(p.prompt, p.positive, p.negative) for p in batch_set.pairs)
    assert len(set(ranked)) == 16  # no ties, so each batch's place in the ranking is clear
    for batch in batch_set.batches(4, seed=1):  # 4 batches: one pool, sorted as a whole
        widths = sorted(map(length, batch.prompts, batch.positives, batch.negatives))
        lo = ranked.index(widths[0])
        assert widths == ranked[lo : lo + 4]
    singles = list(batch_set.batches(1, seed=0))
    assert sorted(b.positives[0] for b in singles) == sorted(p.positive for p in batch_set.pairs)
    assert all(len(b) == 1 for b in singles)
    with pytest.raises(ValueError, match="^batch_size: must be >= 1, got 0$"):
        next(batch_set.batches(0, seed=0))


def test_negative_token_cap() -> None:
    assert negative_token_cap(_config(negative_max_new_tokens=None), 1) == 1
    assert negative_token_cap(_config(negative_max_new_tokens=None), 40) == 40
    assert negative_token_cap(_config(negative_max_new_tokens=7), 40) == 7
    assert negative_token_cap(_config(negative_max_new_tokens=7), None) == 7
    with pytest.raises(ValueError, match="^max_new_tokens: must be >= 1 or None, got 0$"):
        negative_token_cap(_config(negative_max_new_tokens=7), 0)
    with pytest.raises(
        ValueError,
        match="^negative_max_new_tokens: None means the host's limit on the sender's paths, "
        "but prepare got no max_new_tokens; pass the host's limit or set the field$",
    ):
        negative_token_cap(_config(negative_max_new_tokens=None), None)


# ------------------------------------------------------------------ prepare and the gap
def _selection_of(candidates: list[Candidate], round_idx: int = 0) -> Selection:
    n = len(candidates)
    features = np.zeros((n, 3), dtype=np.float32)
    return Selection(PAIR, round_idx, candidates, np.arange(n), features, None, "all", n)


def test_prepare_asks_for_the_receivers_paths_as_configured() -> None:
    config = _config(
        negative_do_sample=True, negative_temperature=0.7, inference_batch_size=3, seed=11
    )
    receiver = _TableReceiver()
    batch_set = LadaPlugin(config).prepare(receiver, _selection_of(_candidates(_items(4)), 4))
    assert receiver.generated == [
        {"max_new_tokens": 12, "do_sample": True, "temperature": 0.7, "batch_size": 3, "seed": 15}
    ]
    assert (batch_set.pair, batch_set.round_idx, len(batch_set)) == (PAIR, 4, 4)


@pytest.mark.parametrize("normalize", [False, True])
def test_prepare_records_reference_logprobs_and_the_gap(normalize: bool) -> None:
    """Items 0 and 3 have a wrong sender path and get the gold path as positive (the receiver
    is wrong too): their gap is read on the sender's path, scored once more; the others reuse
    the positive's log-prob."""
    candidates = _candidates(_items(5))
    table = {c.path: (-3.0 - k, 2.0 + k) for k, c in enumerate(candidates)}
    golds = {gold_path(c.item): (-1.0 - k, 5.0) for k, c in enumerate(candidates)}
    receiver = _TableReceiver(table | golds)
    plugin = LadaPlugin(_config(item_reward="gap", normalize_logprobs=normalize))
    batch_set = plugin.prepare(receiver, _selection_of(candidates))

    sources = [p.positive_source for p in batch_set.pairs]
    assert sources == ["gold", "sender", "sender", "gold", "sender"]

    def logprob(path: str) -> float:
        total, count = receiver.table.get(path, (-len(path) / 10, float(len(path))))
        return total / count if normalize else total

    positives = np.array([logprob(p.positive) for p in batch_set.pairs])
    negatives = np.array([logprob(p.negative) for p in batch_set.pairs])
    assert batch_set.ref.positive.dtype == torch.float64
    assert batch_set.ref.positive.numpy() == pytest.approx(positives)
    assert batch_set.ref.negative.numpy() == pytest.approx(negatives)
    token_mean = [
        receiver.table[p.positive][0] / receiver.table[p.positive][1] for p in batch_set.pairs
    ]
    assert batch_set.ref_losses == pytest.approx(-np.array(token_mean))
    sender_lp = np.array([c.sender_logprob for c in candidates])
    on_sender_path = np.array([logprob(c.path) for c in candidates])
    assert batch_set.gap == pytest.approx(sender_lp - on_sender_path)
    # positives and negatives once, then the two sender paths that were not a positive
    n = len(batch_set)
    assert len(receiver.scored) == 2 * n + 2
    assert receiver.scored[2 * n :] == [candidates[0].path, candidates[3].path]


def test_gap_is_nan_where_either_logprob_is_not_finite() -> None:
    items = _items(5)
    candidates = [
        Candidate(it, render_path(it.rationale, it.answer), lp)
        for it, lp in zip(items, [-1.0, float("nan"), -3.0, -4.0, float("-inf")], strict=True)
    ]
    table = {c.path: (-2.0, 4.0) for c in candidates}
    table[candidates[2].path] = (float("nan"), 4.0)
    plugin = LadaPlugin(_config(item_reward="gap", selection_mode="all"))
    batch_set = plugin.prepare(_TableReceiver(table), _selection_of(candidates))
    assert batch_set.gap is not None and batch_set.gap.dtype == np.float64
    assert np.isnan(batch_set.gap[[1, 2, 4]]).all()
    assert batch_set.gap[[0, 3]].tolist() == [1.0, -2.0]


def test_gap_names_the_first_items_without_a_sender_logprob() -> None:
    candidates = [Candidate(c.item, c.path) for c in _candidates(_items(5))]
    ids = [c.item.id for c in candidates]
    with pytest.raises(ValueError, match=re.escape(f"{ids[:3]} (pair {PAIR!r})")) as error:
        LadaPlugin(_config(item_reward="gap")).prepare(_TableReceiver(), _selection_of(candidates))
    assert ids[3] not in str(error.value)


def test_prepare_without_gap_reward_and_of_an_empty_selection() -> None:
    plugin = LadaPlugin(_config(item_reward="loss_drop"))
    batch_set = plugin.prepare(_TableReceiver(), _selection_of(_candidates(_items(3)), 2))
    assert batch_set.gap is None and batch_set.round_idx == 2
    empty = plugin.prepare(_TableReceiver(), _selection_of([], 6))
    assert len(empty) == 0 and empty.kept.dtype == np.int64 and empty.round_idx == 6
    assert _selection_of([]).features[empty.kept].shape == (0, 3)  # kept indexes features


# ------------------------------------------------------------------ select
def test_select_defaults_and_budget_checks() -> None:
    receiver, plugin = _TableReceiver(), LadaPlugin(_config(budget=6, selection_mode="random"))
    candidates = _candidates(_items(10))
    selection = plugin.select(receiver, candidates, pair=PAIR)
    assert selection.round_idx == 0 and selection.n_offered == 10
    assert len(plugin.select(receiver, candidates, pair="other", budget=1)) == 1
    assert len(plugin.select(receiver, candidates, pair="third", budget=2)) == 2  # not 6
    with pytest.raises(ValueError, match="^budget: must be >= 1 or None, got 0$"):
        plugin.select(receiver, candidates, pair=PAIR, budget=0)


def test_an_empty_offer_selects_nothing_in_the_filters_width() -> None:
    receiver, plugin = _TableReceiver(), LadaPlugin(_config())
    empty = plugin.select(receiver, [], pair=PAIR, round_idx=3)
    assert (empty.pair, empty.round_idx, empty.strategy, empty.n_offered) == (PAIR, 3, "empty", 0)
    assert empty.candidates == [] and empty.scores is None and empty.stats == {}
    assert empty.indices.shape == (0,) and empty.indices.dtype == np.int64
    assert empty.features.shape == (0, 0) and empty.features.dtype == np.float32
    width = plugin.select(receiver, _candidates(_items(8)), pair=PAIR).features.shape[1]
    assert plugin.select(receiver, [], pair=PAIR).features.shape == (0, width)
    assert receiver.embedded and all(receiver.embedded)  # an empty offer embeds nothing


def test_round_one_reads_the_local_centroid_in_lada_and_exploit_only_only() -> None:
    candidates = _candidates(_items(12))
    local = [render_prompt(it) + gold_path(it) for it in _items(12) if it.domain == "sub"]
    centroid = np.stack([_vector(t) for t in local]).mean(axis=0)
    picks = {}
    for mode in ("lada", "exploit_only"):
        receiver = _TableReceiver()
        plugin = LadaPlugin(_config(selection_mode=mode, budget=4))
        by_texts = plugin.select(receiver, candidates, pair=PAIR, local_texts_or_embedding=local)
        assert by_texts.strategy == "round1_nearest_clusters"
        assert receiver.embedded[1] == local  # after the candidates, the local texts
        matrix = np.stack([_vector(t) for t in local])  # [N, H] embeddings
        for given in (centroid, matrix):
            again = LadaPlugin(_config(selection_mode=mode, budget=4)).select(
                receiver, candidates, pair=PAIR, local_texts_or_embedding=given
            )
            assert again.indices.tolist() == by_texts.indices.tolist()
        picks[mode] = by_texts.indices.tolist()
    assert picks["lada"] == picks["exploit_only"]
    # 'all' never reads the local data
    receiver = _TableReceiver()
    LadaPlugin(_config(selection_mode="all")).select(
        receiver, candidates, pair=PAIR, local_texts_or_embedding=local
    )
    assert len(receiver.embedded) == 1
    with pytest.raises(
        ValueError, match="^local_texts_or_embedding: empty; pass None when there is no data$"
    ):
        LadaPlugin(_config()).select(
            _TableReceiver(), candidates, pair=PAIR, local_texts_or_embedding=[]
        )


def _choosing_nothing(plugin: LadaPlugin, scores: np.ndarray | None) -> None:
    """The pair's filter selects none of the offered candidates (with these scores)."""

    def choose(features, **kwargs):  # type: ignore[no-untyped-def]
        return FilterChoice(np.zeros(0, dtype=np.int64), scores, "scored")

    plugin.filter(PAIR).choose = choose  # type: ignore[method-assign]


def test_empty_selection_top_k_takes_the_best_scored_ties_in_offer_order() -> None:
    n = 40
    scores = np.repeat([0.2, 0.9, 0.5, 0.7], 10)[np.random.default_rng(1).permutation(n)]
    candidates = _candidates(_items(n))
    plugin = LadaPlugin(_config(empty_selection="top_k", empty_selection_k=14, budget=None))
    _choosing_nothing(plugin, scores)
    log = _Counts()
    selection = plugin.select(_TableReceiver(), candidates, pair=PAIR, log=log)
    best = sorted(range(n), key=lambda i: -scores[i])[:14]  # sorted() is stable
    assert selection.indices.tolist() == best and selection.indices.dtype == np.int64
    assert selection.candidates == [candidates[i] for i in best]
    assert selection.strategy == "scored+empty_top_k" and selection.scores is scores
    assert log == {EMPTY_SELECTION_COUNTER: 1}


@pytest.mark.parametrize(
    ("k", "config_budget", "budget", "expected"),
    [
        (3, None, None, 3),  # the fallback's own k
        (8, None, None, 5),  # the offer
        (8, 4, None, 4),  # the config's budget
        (8, 4, 2, 2),  # the budget of this call, before the config's
        (8, 2, 4, 4),
    ],
)
def test_empty_selection_top_k_is_capped_by_k_offer_and_budget(
    k: int, config_budget: int | None, budget: int | None, expected: int
) -> None:
    scores = np.array([0.1, 0.5, 0.3, 0.9, 0.7])
    for given in (scores, None):
        plugin = LadaPlugin(_config(empty_selection_k=k, budget=config_budget))
        _choosing_nothing(plugin, given)
        rng = copy.deepcopy(plugin.filter(PAIR).rng)
        selection = plugin.select(
            _TableReceiver(), _candidates(_items(5)), pair=PAIR, budget=budget
        )
        if given is None:  # no scores: a draw of the filter's generator
            assert selection.indices.tolist() == random_select(5, expected, rng).tolist()
        else:
            assert selection.indices.tolist() == [3, 4, 1, 2, 0][:expected]
        assert selection.strategy == "scored+empty_top_k" and selection.scores is given


def test_empty_selection_skip_and_error() -> None:
    scores = np.array([0.4, 0.6, 0.5])
    skipping = LadaPlugin(_config(empty_selection="skip"))
    _choosing_nothing(skipping, scores)
    log = _Counts()
    skipped = skipping.select(_TableReceiver(), _candidates(_items(3)), pair=PAIR, log=log)
    assert len(skipped) == 0 and skipped.indices.shape == (0,) and skipped.n_offered == 3
    assert skipped.strategy == "scored+empty_skip" and skipped.scores is scores
    assert skipped.features.shape[0] == 0 and log == {EMPTY_SELECTION_COUNTER: 1}

    failing = LadaPlugin(_config(empty_selection="error"))
    _choosing_nothing(failing, scores)
    log = _Counts()
    message = (
        f"^{re.escape(PAIR)}: round 3: the filter \\(scored\\) selected none of the offered "
        "candidates; set lada.empty_selection to 'top_k' or 'skip' to go on$"
    )
    with pytest.raises(EmptySelectionError, match=message):
        failing.select(_TableReceiver(), _candidates(_items(3)), pair=PAIR, round_idx=3, log=log)
    assert log == {EMPTY_SELECTION_COUNTER: 1}


# ------------------------------------------------------------------ oracle and RHO-LOSS arms
def _leveled(n: int) -> list[ReasoningItem]:
    return [
        ReasoningItem.from_dict(it.to_dict() | {"difficulty": 1 + k % 2})
        for k, it in enumerate(_items(n))
    ]


def test_oracle_without_a_count_takes_the_budget_of_its_matches() -> None:
    offered = _candidates(_leveled(12))  # 'add' items are even, at level 1
    local = [it for it in _leveled(4) if it.domain == "add"]
    for config_budget, budget, expected in ((None, 2, 2), (3, None, 3), (3, 5, 5), (9, None, 6)):
        plugin = LadaPlugin(_config(selection_mode="oracle", budget=config_budget))
        selection = plugin.select(
            _TableReceiver(), offered, pair=PAIR, budget=budget, local_items=local
        )
        assert len(selection) == expected and selection.stats == {"oracle_matching": 6.0}
        assert all(c.item.domain == "add" and c.item.difficulty == 1 for c in selection.candidates)
    with pytest.raises(ValueError, match=f"^{re.escape(PAIR)}: selection_mode 'oracle' needs"):
        LadaPlugin(_config(selection_mode="oracle")).select(_TableReceiver(), offered, pair=PAIR)


def test_rho_loss_ranks_by_receiver_minus_irreducible_loss_and_records_its_stats() -> None:
    candidates = _candidates(_items(5))
    receiver_losses = np.array([2.0, 1.0, 3.0, 0.5, 2.5])
    il_losses = np.array([0.5, 0.8, 2.9, 0.1, 0.5])
    paths = [c.path for c in candidates]
    receiver = _TableReceiver(
        {p: (-2.0 * x, 2.0) for p, x in zip(paths, receiver_losses, strict=True)}
    )
    il_model = _TableReceiver({p: (-4.0 * x, 4.0) for p, x in zip(paths, il_losses, strict=True)})
    scores = receiver_losses - il_losses  # [1.5, 0.2, 0.1, 0.4, 2.0]
    for config_budget, budget, best in ((2, None, [4, 0]), (2, 3, [4, 0, 3])):
        plugin = LadaPlugin(_config(selection_mode="rho_loss", budget=config_budget))
        trained = IrreducibleLossModel(il_model, n_items=7, train_loss=0.25, steps=6)  # type: ignore[arg-type]
        plugin.irreducible[PAIR] = trained
        selection = plugin.select(receiver, candidates, pair=PAIR, budget=budget, local_items=[])
        assert selection.indices.tolist() == best and selection.strategy == "rho_loss"
        assert selection.scores == pytest.approx(scores)
        assert selection.stats == {
            "rho_il_mean": pytest.approx(il_losses.mean()),
            "rho_receiver_loss_mean": pytest.approx(receiver_losses.mean()),
            "rho_score_mean_selected": pytest.approx(scores[best].mean()),
            "rho_il_items": 7.0,
            "rho_il_train_loss": 0.25,
            "rho_il_steps": 6.0,
        }
    with pytest.raises(
        ValueError,
        match=f"^{re.escape(PAIR)}: selection_mode 'rho_loss' needs the receiver's local items to "
        "train its irreducible-loss model, and this receiver has none \\(the server has no local "
        "data of its own; run this arm on a one-way host such as fedcot\\)$",
    ):
        LadaPlugin(_config(selection_mode="rho_loss", budget=2)).select(
            receiver, candidates, pair=PAIR
        )


# ------------------------------------------------------------------ state
def test_filters_are_named_by_pair_on_the_plugins_device(tmp_path: Path) -> None:
    plugin = LadaPlugin(_config(), device="cpu:0")
    assert plugin.filter(PAIR).name == PAIR
    assert plugin.filter(PAIR).device == torch.device("cpu:0") != torch.device("cpu")
    plugin.select(_TableReceiver(), _candidates(_items(8)), pair=PAIR)
    plugin.save(tmp_path / "deep" / "er" / "lada.pt")  # missing folders are made
    restored = LadaPlugin.load(tmp_path / "deep" / "er" / "lada.pt", device="cpu:0")
    assert restored.device == "cpu:0" and restored.filter(PAIR).device == torch.device("cpu:0")
    assert restored.filter(PAIR).name == PAIR


def test_load_reads_tensors_and_plain_data_only(tmp_path: Path) -> None:
    state = LadaPlugin(_config()).state_dict() | {"extra": print}  # a pickled global
    torch.save(state, tmp_path / "lada.pt")
    with pytest.raises(pickle.UnpicklingError):
        LadaPlugin.load(tmp_path / "lada.pt")


def test_load_state_dict_checks_format_and_config_and_reads_older_states() -> None:
    plugin = LadaPlugin(_config())
    plugin.previous_b[PAIR] = 1.5
    state = plugin.state_dict()
    with pytest.raises(ValueError, match="^plug-in state: unknown format 2$"):
        LadaPlugin(_config()).load_state_dict(state | {"format": 2})
    with pytest.raises(ValueError, match="^plug-in state: unknown format None$"):
        LadaPlugin(_config()).load_state_dict({k: v for k, v in state.items() if k != "format"})
    with pytest.raises(
        ValueError, match="^plug-in state: saved config differs from this plug-in's config$"
    ):
        LadaPlugin(_config(alpha=0.9)).load_state_dict(state)
    older = {k: v for k, v in state.items() if k != "irreducible"}  # saved before RHO-LOSS
    restored = LadaPlugin(_config())
    restored.load_state_dict(older)
    assert restored.previous_b == {PAIR: 1.5} and restored.irreducible == {}
