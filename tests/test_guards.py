"""Non-finite losses and rewards are skipped, counted and bounded; empty selections fall back."""

from __future__ import annotations

import pickle
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lada.hosts.base import ClientParty, RoundLog
from lada.hosts.lada_steps import receive_with_lada
from lada.hosts.payloads import PublicPaths
from lada.method.config import LadaConfig
from lada.method.contrastive import DistillBatch, LossParts
from lada.method.filter import FilterChoice
from lada.method.plugin import (
    EMPTY_SELECTION_COUNTER,
    NONFINITE_REWARD_COUNTER,
    Candidate,
    EmptySelectionError,
    LadaPlugin,
    pair_name,
)
from lada.models.guards import NONFINITE_COUNTER, NonFiniteGuard, NonFiniteLossError
from lada.models.presets import load_model
from lada.models.training import fit, sft_on_paths
from lada.models.wrapper import ReasoningModel
from lada.tasks.item import ReasoningItem
from lada.tasks.prompts import render_path, render_prompt

PAIR = pair_name("llm", "slm_0")
NAN = float("nan")


# --------------------------------------------------------------------------- the guard itself
def test_guard_passes_finite_values_and_counts_skips_until_the_limit() -> None:
    log = RoundLog()
    guard = NonFiniteGuard(2, log=log)
    assert guard.check(torch.tensor(1.5), "sft") and guard.check(0.0, "sft")
    assert guard.check(torch.tensor(float("inf")), "sft") is False
    assert guard.check(NAN, "sft") is False
    assert guard.skipped == 2 and log.counters[NONFINITE_COUNTER] == 2
    with pytest.raises(NonFiniteLossError) as caught:
        guard.check(torch.tensor(-float("inf")), "client_0 local_training")
    error = caught.value
    assert isinstance(error, FloatingPointError)
    assert str(error).startswith(
        "client_0 local_training: non-finite value (-inf) in 3 batches, more than max_skips=2"
    )
    assert (error.where, error.skipped, error.max_skips) == ("client_0 local_training", 3, 2)
    assert str(pickle.loads(pickle.dumps(error))) == str(error)
    assert log.counters[NONFINITE_COUNTER] == 3


def test_guard_with_zero_skips_stops_at_the_first_and_rejects_negative_limits() -> None:
    with pytest.raises(NonFiniteLossError, match="in 1 batches, more than max_skips=0"):
        NonFiniteGuard(0).check(NAN, "x")
    with pytest.raises(ValueError, match="max_skips"):
        NonFiniteGuard(-1)


# --------------------------------------------------------------------------- fit()
class _StepCounter:
    """The part of a ReasoningModel `fit` uses, recording the losses it stepped on."""

    learning_rate = 1e-3

    def __init__(self) -> None:
        self.stepped: list[float] = []

    def train(self) -> None:
        pass

    def train_step(self, loss: torch.Tensor) -> float:
        self.stepped.append(float(loss))
        return float(loss)


def _loss_of(bad: set[int]):  # type: ignore[no-untyped-def]
    def loss_fn(batch: list[int]) -> torch.Tensor:
        return torch.tensor(NAN if set(batch) & bad else 1.0 + batch[0])

    return loss_fn


def test_fit_skips_the_step_of_a_non_finite_loss_and_counts_it() -> None:
    model, log, seen = _StepCounter(), RoundLog(), []
    losses = fit(
        model,  # type: ignore[arg-type]
        [1] * 6,
        _loss_of({1, 4}),
        epochs=1,
        batch_size=1,
        seed=0,
        progress=False,
        max_nonfinite_skips=2,
        log=log,
        on_nonfinite=lambda batch, value: seen.append((batch, value)),
    )
    assert sorted(model.stepped) == [1.0, 3.0, 4.0, 6.0]  # batches 1 and 4 never stepped
    assert losses == model.stepped
    assert log.counters[NONFINITE_COUNTER] == 2
    assert sorted(b for b, _ in seen) == [[1], [4]] and all(np.isnan(v) for _, v in seen)


def test_fit_stops_after_more_than_max_skips() -> None:
    model = _StepCounter()
    with pytest.raises(NonFiniteLossError, match="slm warmup: .* in 2 batches, .*max_skips=1"):
        fit(
            model,  # type: ignore[arg-type]
            [1] * 6,
            _loss_of({0, 2, 5}),
            epochs=1,
            batch_size=1,
            seed=0,
            desc="slm warmup",
            progress=False,
            max_nonfinite_skips=1,
        )


def test_sft_passes_the_limit_and_log_through_to_fit() -> None:
    model = load_model("tiny-1m", device="cpu", seed=0)
    with torch.no_grad():
        next(model.model.parameters()).fill_(NAN)
    before = [p.detach().clone() for p in model.model.parameters()]
    log = RoundLog()
    prompts, paths = ["Q: 1 + 1?\nA:", "Q: 2 + 2?\nA:"], [" #### 2\n", " #### 4\n"]
    losses = sft_on_paths(
        model, prompts, paths, batch_size=1, progress=False, max_nonfinite_skips=2, log=log
    )
    assert losses == [] and log.counters[NONFINITE_COUNTER] == 2
    after = list(model.model.parameters())
    assert all(torch.equal(a, b) or a.isnan().all() for a, b in zip(after, before, strict=True))
    with pytest.raises(NonFiniteLossError, match="client_0 local_training: .* in 2 batches"):
        sft_on_paths(
            model,
            prompts,
            paths,
            batch_size=1,
            progress=False,
            desc="client_0 local_training",
            max_nonfinite_skips=1,
        )


# --------------------------------------------------------------------------- the plug-in
def _items(n: int) -> list[ReasoningItem]:
    out = []
    for i in range(n):
        a, b = 2 + i % 7, 1 + i % 5
        out.append(
            ReasoningItem(
                id=f"add-{i}",
                domain="add",
                question=f"What is {a} + {b}?",
                answer=str(a + b),
                answer_kind="numeric",
                rationale=f"{a} + {b} = {a + b}",
            )
        )
    return out


ITEMS = _items(8)


def _candidates() -> list[Candidate]:
    return [
        Candidate(item, render_path(item.rationale, item.answer), sender_logprob=-5.0 - k)
        for k, item in enumerate(ITEMS)
    ]


def _config(**overrides: object) -> LadaConfig:
    base: dict[str, object] = {
        "hidden_size": 16,
        "n_clusters": 2,
        "budget": 6,
        "epochs_per_round": 2,
        "negative_max_new_tokens": 8,
        "inference_batch_size": 8,
        "max_nonfinite_skips": 1,
    }
    return LadaConfig(**(base | overrides))


@pytest.fixture(scope="module")
def base_receiver() -> ReasoningModel:
    return load_model("tiny-1m", device="cpu", seed=0, learning_rate=3e-3)


@pytest.fixture
def receiver(base_receiver: ReasoningModel) -> ReasoningModel:
    model = base_receiver.clone()
    by_prompt = {render_prompt(it): it for it in ITEMS}

    def own_paths(prompts: list[str], **kwargs: object) -> list[str]:  # wrong on odd items
        return [
            render_path("I guess", str(int(by_prompt[p].answer) + int(by_prompt[p].id[-1]) % 2))
            for p in prompts
        ]

    model.generate_paths = own_paths  # type: ignore[method-assign]
    return model


class _NonFiniteOnCalls(LadaPlugin):
    """The real loss, made NaN on chosen calls (1-based), as a diverging batch would be."""

    def __init__(self, config: LadaConfig, bad_calls: set[int]) -> None:
        super().__init__(config)
        self.bad_calls = bad_calls
        self.calls = 0

    def loss(self, receiver: ReasoningModel, batch: DistillBatch) -> LossParts:
        parts = super().loss(receiver, batch)
        self.calls += 1
        return replace(parts, total=parts.total * NAN) if self.calls in self.bad_calls else parts


def _stepping(receiver: ReasoningModel) -> list[float]:
    stepped: list[float] = []
    real_step = receiver.train_step

    def counted(loss: torch.Tensor) -> float:
        stepped.append(float(loss.detach()))
        return real_step(loss)

    receiver.train_step = counted  # type: ignore[method-assign]
    return stepped


def test_plugin_fit_skips_non_finite_batches_and_stops_past_the_limit(
    receiver: ReasoningModel,
) -> None:
    plugin = _NonFiniteOnCalls(_config(max_nonfinite_skips=1), bad_calls={2})
    selection = plugin.select(receiver, _candidates(), pair=PAIR, round_idx=0)
    batch_set = plugin.prepare(receiver, selection)
    stepped, log = _stepping(receiver), RoundLog()
    history = plugin.fit(receiver, batch_set, epochs=2, batch_size=2, seed=0, log=log)
    n_batches = 2 * -(-len(batch_set) // 2)
    assert len(history) == len(stepped) == n_batches - 1
    assert all(np.isfinite(h["total"]) for h in history)
    assert log.counters[NONFINITE_COUNTER] == 1

    plugin.bad_calls, plugin.calls = {1, 3}, 0
    with pytest.raises(NonFiniteLossError, match=f"distillation {PAIR}: .* in 2 batches"):
        plugin.fit(receiver, batch_set, epochs=2, batch_size=2, seed=0)


def _corrupt(kind: str, batch_set, row: int) -> None:  # type: ignore[no-untyped-def]
    if kind == "gap":
        batch_set.gap[row] = NAN
    elif kind == "loss_drop":
        batch_set.ref_losses[row] = np.inf
    else:
        batch_set.ref.negative[row] = NAN


@pytest.mark.parametrize("item_reward", ["gap", "loss_drop", "margin"])
def test_items_with_non_finite_rewards_are_left_out_of_the_filter_update(
    receiver: ReasoningModel, item_reward: str
) -> None:
    plugin = LadaPlugin(_config(item_reward=item_reward, max_nonfinite_skips=1))
    selection = plugin.select(receiver, _candidates(), pair=PAIR, round_idx=0)
    batch_set = plugin.prepare(receiver, selection)
    n = len(batch_set)
    bad_id = batch_set.pairs[1].item.id
    _corrupt(item_reward, batch_set, 1)
    log = RoundLog()
    rewards = plugin.observe(receiver, selection, batch_set, log=log)
    assert bad_id not in rewards.item_ids and len(rewards.item_ids) == n - 1
    assert len(rewards.rewards) == n - 1 and np.all(np.isfinite(rewards.rewards))
    assert rewards.nonfinite_skipped == 1 and rewards.summary()["nonfinite_skipped"] == 1.0
    assert log.counters[NONFINITE_REWARD_COUNTER] == 1
    assert plugin.filter(PAIR).n_observed == n - 1 and plugin.filter(PAIR).is_trained


def test_too_many_non_finite_rewards_stop_the_run(receiver: ReasoningModel) -> None:
    plugin = LadaPlugin(_config(item_reward="loss_drop", max_nonfinite_skips=1))
    selection = plugin.select(receiver, _candidates(), pair=PAIR, round_idx=0)
    batch_set = plugin.prepare(receiver, selection)
    batch_set.ref_losses[[0, 2]] = np.nan
    bad_id = batch_set.pairs[2].item.id
    with pytest.raises(NonFiniteLossError, match=f"reward of item '{bad_id}' \\({PAIR}\\)"):
        plugin.observe(receiver, selection, batch_set)
    assert not plugin.filter(PAIR).is_trained


def test_overflowing_batch_term_leaves_the_filter_unchanged(receiver: ReasoningModel) -> None:
    plugin = LadaPlugin(_config(item_reward="loss_drop", max_nonfinite_skips=1))
    selection = plugin.select(receiver, _candidates(), pair=PAIR, round_idx=0)
    batch_set = plugin.prepare(receiver, selection)
    batch_set.ref_losses[:] = 800.0  # exp(800) overflows: B_before = inf
    log = RoundLog()
    rewards = plugin.observe(receiver, selection, batch_set, log=log)
    assert len(rewards.rewards) == 0 and rewards.fit is None and np.isnan(rewards.r_batch)
    assert log.counters[NONFINITE_REWARD_COUNTER] == 1
    assert not plugin.filter(PAIR).is_trained and PAIR not in plugin.previous_b


# --------------------------------------------------------------------------- empty selection
SCORES = np.array([0.1, 0.9, 0.3, 0.8, 0.2, 0.7, 0.4, 0.6])


def _selects_nothing(plugin: LadaPlugin, scores: np.ndarray | None, strategy: str) -> None:
    """Make the pair's filter choose nothing (as a strict threshold or rule could)."""
    empty = FilterChoice(np.zeros(0, dtype=np.int64), scores, strategy)
    plugin.filter(PAIR).choose = lambda features, **kwargs: empty  # type: ignore[method-assign]


def test_default_fallback_takes_the_best_scored_candidates(receiver: ReasoningModel) -> None:
    assert LadaConfig().empty_selection == "top_k"
    plugin = LadaPlugin(_config(empty_selection_k=3, budget=None))
    _selects_nothing(plugin, SCORES, "scored")
    log = RoundLog()
    selection = plugin.select(receiver, _candidates(), pair=PAIR, round_idx=1, log=log)
    assert selection.indices.tolist() == [1, 3, 5]
    assert [c.item.id for c in selection.candidates] == ["add-1", "add-3", "add-5"]
    assert selection.features.shape[0] == 3 and selection.strategy == "scored+empty_top_k"
    assert log.counters[EMPTY_SELECTION_COUNTER] == 1
    capped = plugin.select(receiver, _candidates(), pair=PAIR, round_idx=1, budget=2)
    assert capped.indices.tolist() == [1, 3]


def test_fallback_without_scores_draws_k_distinct_candidates(receiver: ReasoningModel) -> None:
    plugin = LadaPlugin(_config(empty_selection_k=4, budget=None))
    _selects_nothing(plugin, None, "round1_random")
    selection = plugin.select(receiver, _candidates(), pair=PAIR)
    assert len(set(selection.indices.tolist())) == 4 and selection.indices.max() < len(ITEMS)
    assert selection.strategy == "round1_random+empty_top_k"


def test_skip_fallback_runs_an_empty_round(receiver: ReasoningModel) -> None:
    plugin = LadaPlugin(_config(empty_selection="skip"))
    _selects_nothing(plugin, SCORES, "scored")
    log = RoundLog()
    selection = plugin.select(receiver, _candidates(), pair=PAIR, log=log)
    assert len(selection) == 0 and selection.n_offered == len(ITEMS)
    assert selection.strategy == "scored+empty_skip"
    assert log.counters[EMPTY_SELECTION_COUNTER] == 1
    batch_set = plugin.prepare(receiver, selection)
    assert plugin.fit(receiver, batch_set, epochs=1, batch_size=4, seed=0) == []
    assert len(plugin.observe(receiver, selection, batch_set).rewards) == 0


def test_error_fallback_names_pair_and_round(receiver: ReasoningModel) -> None:
    plugin = LadaPlugin(_config(empty_selection="error"))
    _selects_nothing(plugin, SCORES, "scored")
    with pytest.raises(EmptySelectionError, match=f"{PAIR}: round 2: the filter \\(scored\\)"):
        plugin.select(receiver, _candidates(), pair=PAIR, round_idx=2)


def test_select_rejects_a_budget_below_one(receiver: ReasoningModel) -> None:
    with pytest.raises(ValueError, match="budget: must be >= 1"):
        LadaPlugin(_config()).select(receiver, _candidates(), pair=PAIR, budget=0)


def test_config_fields_are_validated() -> None:
    with pytest.raises(ValueError, match="empty_selection"):
        LadaConfig(empty_selection="random")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_nonfinite_skips"):
        LadaConfig(max_nonfinite_skips=-1)
    with pytest.raises(ValueError, match="empty_selection_k"):
        LadaConfig(empty_selection_k=0)


# --------------------------------------------------------------------------- host round log
def test_host_step_shows_skips_and_fallbacks_in_the_round_log(receiver: ReasoningModel) -> None:
    plugin = _NonFiniteOnCalls(_config(empty_selection_k=4, budget=None), bad_calls={1})
    _selects_nothing(plugin, SCORES, "scored")
    client = ClientParty(
        name="client_0", model=receiver, plugin=plugin, client_id=0, public_pool=list(ITEMS)
    )
    client.model.name = "slm_0"
    candidates = _candidates()
    paths = PublicPaths(
        sender="llm",
        item_ids=[c.item.id for c in candidates],
        paths=[c.path for c in candidates],
        logprobs=[float(c.sender_logprob) for c in candidates],  # type: ignore[arg-type]
        token_counts=[len(c.path) + 1 for c in candidates],
    )
    train = SimpleNamespace(batch_size=2, max_new_tokens=8)
    record = receive_with_lada(
        client, paths, client.public_by_id(), [], round_idx=1, train=train, steps=2, seed=0
    )
    assert record["strategy"] == "scored+empty_top_k" and len(record["item_ids"]) == 4
    assert client.log.counters[EMPTY_SELECTION_COUNTER] == 1
    assert client.log.counters[NONFINITE_COUNTER] == 1
    assert record["rewards"]["nonfinite_skipped"] == 0.0
    assert client.log.counters["selected"] == 4
