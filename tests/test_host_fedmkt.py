"""The FedMKT host: its top-k payload, the selective KD, and whole rounds in-process."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from rich.console import Console

from lada.experiments.config import ExperimentConfig, validate
from lada.experiments.runner import Runner, RunResult, private_texts
from lada.federation.inprocess import transport
from lada.hosts.base import ClientParty, ServerParty
from lada.hosts.budget import Budget
from lada.hosts.config import FedMKTConfig
from lada.hosts.fedmkt import (
    FedMKT,
    TopKLogits,
    aligned_target,
    item_ce,
    kd_loss,
    own_targets,
    own_vocab,
    path_tokens,
    public_topk,
    target_weights,
)
from lada.hosts.payloads import PayloadError
from lada.models.presets import load_model
from lada.tasks.item import ReasoningItem
from lada.tasks.prompts import gold_path, render_prompt

from .conftest import spread_weights

ITEMS = [
    ReasoningItem("pub-0", "arith", "What is 3 + 4?", "7", "numeric", "3 + 4 = 7"),
    ReasoningItem(
        "pub-1", "legs", "Legs of 2 spiders?", "16", "numeric", "each spider has 8 legs\n2 * 8 = 16"
    ),
    ReasoningItem("pub-2", "arith", "What is 12 - 5?", "7", "numeric", "12 - 5 = 7"),
]


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models run fastest single-threaded, above all on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train_config() -> Any:
    return ExperimentConfig().train.model_copy(
        update={"batch_size": 2, "local_epochs": 1, "generation_batch_size": 8}
    )


def _party(preset: str, seed: int, cls: type = ServerParty, **kwargs: Any) -> Any:
    model = spread_weights(load_model(preset, device="cpu", seed=seed), seed=seed, std=0.1)
    return cls(name=f"p{seed}", model=model, **kwargs)


# --------------------------------------------------------------------------- loss and choice
def test_kd_loss_matches_a_hand_computation() -> None:
    logits = torch.tensor([[1.0, 0.0, -1.0, 0.5], [0.2, 0.3, 2.0, -0.4], [0.0, 0.0, 0.0, 1.0]])
    gold = torch.tensor([0, 2, 1])
    ids = torch.tensor([[0, 3, 1], [2, 1, 0], [1, 0, 0]])  # row 3: padding at p = 0
    probs = torch.tensor([[0.6, 0.3, 0.1], [0.5, 0.25, 0.25], [1.0, 0.0, 0.0]])
    w, t = 0.9, 2.0

    def log_softmax(row: list[float], temp: float) -> list[float]:
        z = math.log(sum(math.exp(v / temp) for v in row))
        return [v / temp - z for v in row]

    lm = sum(-log_softmax(r, 1.0)[g] for r, g in zip(logits.tolist(), gold.tolist())) / 3
    ce = kl = 0.0
    for row, row_ids, row_probs in zip(logits.tolist(), ids.tolist(), probs.tolist()):
        lp = log_softmax(row, t)
        for i, q in zip(row_ids, row_probs):
            if q > 0:
                ce -= q * lp[i] / 3
                kl += q * (math.log(q) - lp[i]) / 3
    for kind, kd in (("ce", ce), ("kl", kl)):
        got = kd_loss(logits, gold, ids, probs, kd_weight=w, temperature=t, kind=kind)
        assert float(got.lm) == pytest.approx(lm, rel=1e-5)
        assert float(got.kd) == pytest.approx(kd, rel=1e-5)
        assert float(got.total) == pytest.approx((1 - w) * lm + w * kd, rel=1e-5)


def test_kd_loss_is_zero_kl_against_the_students_own_distribution() -> None:
    logits = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    probs = torch.softmax(logits / 1.5, dim=-1)
    ids = torch.arange(7).expand(5, 7)
    got = kd_loss(logits, logits.argmax(-1), ids, probs, kd_weight=1.0, temperature=1.5, kind="kl")
    assert float(got.kd) == pytest.approx(0.0, abs=1e-5)


def test_target_choice_picks_the_lowest_cross_entropy() -> None:
    ce = np.array([[0.5, 2.0, 1.0, 3.0], [1.5, 0.1, 1.0, 2.5], [0.9, 0.3, 4.0, np.inf]])
    weights = target_weights(ce, "lowest_ce")
    assert weights.sum(0).tolist() == [1.0] * 4
    assert weights.argmax(0).tolist() == ce.argmin(0).tolist()
    assert weights[0, 2] == 1.0  # a tie goes to the first candidate
    soft = target_weights(ce, "weighted")
    np.testing.assert_allclose(soft.sum(0), 1.0)
    expected = np.exp(-ce[:, 0]) / np.exp(-ce[:, 0]).sum()
    np.testing.assert_allclose(soft[:, 0], expected)
    assert soft[2, 3] == 0.0  # a missing candidate (CE = inf) gets no weight


# --------------------------------------------------------------------------- payload
def test_topk_payload_matches_the_model_and_survives_the_codec() -> None:
    party = _party("tiny-1m", 1)
    message = public_topk(party, ITEMS, top_k=16, batch_size=2, dtype="float32")
    prompts, paths = [render_prompt(it) for it in ITEMS], [gold_path(it) for it in ITEMS]
    tokens = path_tokens(party.model, prompts, paths)
    assert message.n_tokens().tolist() == [len(t) for t in tokens]
    np.testing.assert_array_equal(message.tokens, np.concatenate(tokens))
    assert message.topk_ids.shape == (len(message.tokens), 16)
    assert np.all(np.diff(message.topk_logprobs, axis=1) <= 0)  # best first
    logprobs = party.model.sequence_logprobs(prompts, paths)
    np.testing.assert_allclose(message.nll, -logprobs.numpy(), rtol=1e-4)
    assert item_ce(message, {}, "token") == pytest.approx(message.nll / message.n_tokens())
    chars = {it.id: p for it, p in zip(ITEMS, paths)}
    per_char = item_ce(message, chars, "character")
    assert per_char == pytest.approx(message.nll / np.array([len(p) + 1 for p in paths]))

    arrived, size = transport(message)
    # On the wire: the arrays' bytes plus the records' framing.
    assert isinstance(arrived, TopKLogits) and size >= message.nbytes() > 0
    for name in ("offsets", "tokens", "topk_ids", "topk_logprobs", "nll"):
        np.testing.assert_array_equal(getattr(arrived, name), getattr(message, name))
    assert arrived.vocab == message.vocab and arrived.item_ids == message.item_ids
    half = public_topk(party, ITEMS, top_k=16, batch_size=2, dtype="float16")
    assert half.topk_logprobs.dtype == np.float16 and half.nbytes() < message.nbytes()


def test_malformed_topk_payload_is_refused() -> None:
    with pytest.raises(PayloadError, match="offsets"):
        TopKLogits(item_ids=["a"], offsets=np.array([0, 3]), tokens=np.zeros(2, np.int32))
    with pytest.raises(PayloadError, match="no paths"):
        TopKLogits().public_paths()


# --------------------------------------------------------------------------- selective KD
def _capture(host: FedMKT, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def fake_distill(party, items, targets, steps, seed) -> None:
        seen.update(items=list(items), targets=list(targets), steps=steps)

    monkeypatch.setattr(host, "_distill", fake_distill)
    return seen


def _same(a: Any, b: Any) -> bool:
    return np.array_equal(a.ids, b.ids) and np.allclose(a.probs, b.probs)


def test_server_distils_each_item_from_the_lowest_ce_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = FedMKTConfig(top_k=8)
    host = FedMKT(config, _train_config(), False, Budget(client_steps=3, server_steps=2))
    server = _party("tiny-1m", 0, public_pool=list(ITEMS))
    clients = [_party("tiny-1m", 1), _party("tiny-gpt2-2m", 2)]
    replies = [public_topk(c, ITEMS, top_k=8, batch_size=4, dtype="float16") for c in clients]
    replies[0].sender, replies[1].sender = "slm_0", "slm_1"
    replies[0].nll[:] = [1.0, 500.0, 1.0]  # client 0 wins items 0 and 2, client 1 item 1
    replies[1].nll[:] = [500.0, 1.0, 500.0]
    seen = _capture(host, monkeypatch)
    host._server_distill(server, replies, seed=0)
    assert [it.id for it in seen["items"]] == [it.id for it in ITEMS]
    assert seen["steps"] == 2  # the server's budget, not the clients'
    prompts, paths = [render_prompt(it) for it in ITEMS], [gold_path(it) for it in ITEMS]
    llm_tokens = path_tokens(server.model, prompts, paths)
    for n, winner in enumerate([0, 1, 0]):
        want = aligned_target(replies[winner], n, llm_tokens[n], own_vocab(server), 1.0)
        assert _same(seen["targets"][n], want)
    assert server.log.counters["kd_target_slm_0"] == 2
    assert server.log.counters["kd_target_slm_1"] == 1
    # The word-level client's whole words cannot align to characters: one-hot there.
    word_target = seen["targets"][1]
    assert word_target.aligned_fraction < 1.0


def test_client_takes_the_llm_target_only_where_its_ce_is_lower(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = FedMKT(FedMKTConfig(top_k=8, temperature=2.0), _train_config(), lada_enabled=False)
    client = _party("tiny-gpt2-2m", 3, cls=ClientParty, public_pool=list(ITEMS))
    llm = _party("tiny-1m", 4)
    teacher = public_topk(llm, ITEMS, top_k=8, batch_size=4, dtype="float16")
    own = public_topk(client, ITEMS, top_k=8, batch_size=4, dtype="float16")
    per_token_own = own.nll / own.n_tokens()
    # The LLM is better than the SLM on item 1 only.
    teacher.nll[:] = teacher.n_tokens() * (per_token_own + np.array([1.0, -1.0, 1.0]))
    seen = _capture(host, monkeypatch)
    host._client_distill(client, teacher, own, seed=0)
    mine = own_targets(own, 2.0)
    assert _same(seen["targets"][0], mine[0]) and _same(seen["targets"][2], mine[2])
    tokens = own.tokens[own.rows(1)]
    want = aligned_target(teacher, 1, tokens, own_vocab(client), 2.0)
    assert _same(seen["targets"][1], want)
    assert client.log.counters["kd_teacher_items"] == 1


# --------------------------------------------------------------------------- whole rounds
def _experiment(output_dir: Path, lada: bool) -> ExperimentConfig:
    return validate(
        {
            "name": "fedmkt-test",
            "rounds": 1,
            "output_dir": str(output_dir),
            "data": {"split": {"n_public": 8, "n_clients": 2, "n_train": 8, "n_test": 2}},
            "llm": {"preset": "tiny-1m", "pretrain": {"items_per_domain": 2, "epochs": 1}},
            "slms": [{"preset": "tiny-1m"}, {"preset": "tiny-gpt2-2m"}],
            "train": {
                "batch_size": 8,
                "max_new_tokens": 8,
                "warmup_local_epochs": 0,
                "generation_batch_size": 16,
            },
            "budget": {"client_steps": 1, "server_steps": 2},  # one step for each client pair
            "host": {"name": "fedmkt"},
            "lada_enabled": lada,
            "lada": {
                "hidden_size": 16,
                "n_clusters": 2,
                "epochs_per_round": 1,
                "negative_max_new_tokens": 8,
            },
        }
    )


def _run(output_dir: Path, lada: bool) -> tuple[RunResult, dict[str, torch.Tensor]]:
    runner = Runner(_experiment(output_dir, lada), audit=True, console=Console(quiet=True))
    before = {k: v.clone() for k, v in runner.federation.server.model.model.state_dict().items()}
    return runner.run(), before


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, dict]:
    return _run(tmp_path_factory.mktemp("fedmkt-plain"), lada=False)


@pytest.fixture(scope="module")
def lada_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, dict]:
    return _run(tmp_path_factory.mktemp("fedmkt-lada"), lada=True)


def _round(result: RunResult, round_idx: int) -> dict[str, Any]:
    lines = (result.run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["round"] == round_idx][0]


@pytest.mark.slow
@pytest.mark.parametrize("which", ["plain_run", "lada_run"])
def test_round_trains_the_llm_reports_traffic_and_leaks_nothing(
    which: str, request: pytest.FixtureRequest
) -> None:
    result, before = request.getfixturevalue(which)
    after = result.federation.server.model.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    traffic = _round(result, 1)["traffic"]
    for key in ("train/down/topk_logits", "train/up/topk_logits"):
        assert traffic["messages"][key] == 2
        assert traffic["bytes"][key] > 0
    assert traffic["total_bytes"] == sum(traffic["bytes"].values())
    assert result.audit.records  # the audit saw what crossed ...
    assert result.audit.leaks(private_texts(result.federation)) == []  # ... and none is private
    sent_ids = {text for where, kind, text in result.audit.records if kind == "topk_logits"}
    assert {it.id for it in result.federation.server.public_pool} <= sent_ids
    assert result.summary["final"]["llm_accuracy"] is not None


@pytest.mark.slow
def test_plain_round_distils_both_ways_with_logits(plain_run: tuple[RunResult, dict]) -> None:
    result, _ = plain_run
    record = _round(result, 1)
    server = record["server_log"]
    n_public = len(result.federation.server.public_pool)
    assert server["counters"]["kd_items"] == n_public
    picks = server["counters"]["kd_target_slm_0"] + server["counters"]["kd_target_slm_1"]
    assert picks == pytest.approx(n_public)  # one target per item
    assert server["trained_tokens"]["llm"] > 0 and "distillation" in server["timings"]
    for client in record["clients"].values():
        assert client["log"]["counters"]["kd_items"] == n_public
        assert {"distillation_lm", "distillation_kd"} <= set(client["log"]["losses"])
    assert (result.run_dir / "selections.jsonl").read_text() == ""  # no filter ran


@pytest.mark.slow
def test_lada_round_replaces_logit_kd_by_the_plugin(
    plain_run: tuple[RunResult, dict], lada_run: tuple[RunResult, dict]
) -> None:
    result, _ = lada_run
    record = _round(result, 1)
    lines = (result.run_dir / "selections.jsonl").read_text().splitlines()
    filters = {json.loads(line)["filter"] for line in lines}
    assert filters == {"llm->slm_0", "llm->slm_1", "slm_0->llm", "slm_1->llm"}
    for log in [record["server_log"], *(c["log"] for c in record["clients"].values())]:
        assert "lada_total" in log["losses"] and "distillation_kd" not in log["losses"]
    # The same LLM logits plus the LLM's paths: LaDa adds bytes, the host's logits stay.
    plain = _round(plain_run[0], 1)["traffic"]["bytes"]["train/down/topk_logits"]
    assert record["traffic"]["bytes"]["train/down/topk_logits"] > plain
