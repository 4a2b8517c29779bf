"""FedCoLLM host: FedAvg and the top-k KL by hand, config checks, one in-process round."""

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
from lada.hosts.base import ClientParty
from lada.hosts.config import FedCoLLMConfig
from lada.hosts.fedcollm import (
    FedCoLLM,
    FedCoLLMServerState,
    base_fingerprint,
    check_shared_vocabulary,
    fedavg,
    topk_kl,
)
from lada.hosts.parties import host_state
from lada.hosts.payloads import PublicItems
from lada.models.presets import TINY_PRESETS, build_tiny_model, load_model
from lada.models.tokenizer import CHAR_ALPHABET, build_char_tokenizer
from lada.models.wrapper import ReasoningModel


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    # Tiny models: thread hand-offs cost more than they save on a shared 2-core machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------- FedAvg
def test_fedavg_equals_hand_weighted_mean() -> None:
    rng = np.random.default_rng(0)
    states = [
        {"a": rng.normal(size=(2, 3)).astype(np.float32), "b": rng.normal(size=4)} for _ in range(3)
    ]
    counts = [3, 1, 6]
    out = fedavg(states, counts)
    for key in ("a", "b"):
        hand = (3 * states[0][key] + 1 * states[1][key] + 6 * states[2][key]) / 10
        np.testing.assert_allclose(out[key], hand, rtol=1e-6)
        assert out[key].dtype == states[0][key].dtype
    # A client without examples has no say; all without examples: a plain mean.
    np.testing.assert_allclose(fedavg(states[:2], [5, 0])["a"], states[0]["a"], rtol=1e-6)
    plain = fedavg(states, [0, 0, 0])["b"]
    np.testing.assert_allclose(plain, (states[0]["b"] + states[1]["b"] + states[2]["b"]) / 3)


def test_fedavg_rejects_adapters_of_other_shapes_or_names() -> None:
    a = {"w": np.zeros((2, 2), dtype=np.float32)}
    with pytest.raises(ValueError, match="client 1.*other adapter tensors"):
        fedavg([a, {"v": np.zeros((2, 2))}], [1, 1], names=["client 0", "client 1"])
    with pytest.raises(ValueError, match="shape"):
        fedavg([a, {"w": np.zeros((2, 3))}], [1, 1])


# ----------------------------------------------------------------------------- KL
def _hand_topk_kl(student, teacher, mask, top_k, t) -> float:
    """Plain-Python KL(teacher top-k || student) * t^2, averaged over masked positions."""
    total, n = 0.0, 0
    for b in range(len(student)):
        for pos in range(len(student[b])):
            if not mask[b][pos]:
                continue
            s, q = student[b][pos], teacher[b][pos]
            top = sorted(range(len(q)), key=lambda i: -q[i])[:top_k]
            z_t = sum(math.exp(q[i] / t) for i in top)
            z_s = sum(math.exp(x / t) for x in s)
            kl = 0.0
            for i in top:
                p_i = math.exp(q[i] / t) / z_t
                q_i = math.exp(s[i] / t) / z_s
                kl += p_i * math.log(p_i / q_i)
            total += kl
            n += 1
    return t * t * total / n


def test_topk_kl_equals_hand_computation() -> None:
    gen = torch.Generator().manual_seed(1)
    student = torch.randn(2, 3, 6, generator=gen)
    teacher = torch.randn(2, 3, 6, generator=gen) * 2
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    got = topk_kl(student, teacher, mask, top_k=3, temperature=2.0)
    hand = _hand_topk_kl(student.tolist(), teacher.tolist(), mask.tolist(), 3, 2.0)
    assert float(got) == pytest.approx(hand, rel=1e-5)
    # Full support and equal logits: no divergence; gradients reach the student only.
    student.requires_grad_(True)
    zero = topk_kl(student, student.detach().clone(), mask, top_k=6, temperature=1.0)
    assert float(zero.detach()) == pytest.approx(0.0, abs=1e-6)
    topk_kl(student, teacher, mask, top_k=3, temperature=1.0).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- checks
def _char_model(alphabet: str) -> ReasoningModel:
    tokenizer = build_char_tokenizer(alphabet)
    torch.manual_seed(0)
    model = build_tiny_model(TINY_PRESETS["tiny-1m"], tokenizer)
    return ReasoningModel(model, tokenizer, name="m")


def test_shared_vocabulary_is_checked() -> None:
    base = _char_model(CHAR_ALPHABET)
    check_shared_vocabulary(base, _char_model(CHAR_ALPHABET))
    with pytest.raises(ValueError, match="output logits"):
        check_shared_vocabulary(base, _char_model(CHAR_ALPHABET[:50]))
    with pytest.raises(ValueError, match="different tokens"):
        check_shared_vocabulary(base, _char_model(CHAR_ALPHABET[::-1]))


def test_an_slm_without_lora_is_a_clear_config_error() -> None:
    host = FedCoLLM(FedCoLLMConfig(), ExperimentConfig().train, lada_enabled=False)
    client = ClientParty(name="client_0", model=load_model("tiny-1m", device="cpu"))
    with pytest.raises(ValueError, match="slms: .*LoRA.*lora"):
        host.client_setup(client, PublicItems(), 0)


# ----------------------------------------------------------------------------- one round
def _config(tmp_path: Path, lada: bool) -> ExperimentConfig:
    return validate(
        {
            "name": "fedcollm-test",
            "rounds": 1,
            "output_dir": str(tmp_path),
            "device": "cpu",
            "data": {"split": {"n_public": 16, "n_clients": 2, "n_train": 12, "n_test": 4}},
            "llm": {"preset": "tiny-1m", "pretrain": {"items_per_domain": 4, "epochs": 1}},
            "slms": [{"preset": "tiny-1m", "lora": {"r": 4}}],
            "train": {
                "batch_size": 8,
                "max_new_tokens": 8,
                "warmup_local_epochs": 0,
                "generation_batch_size": 32,
            },
            "budget": {"client_steps": 2, "server_steps": 2},  # 16 public items at batch 8
            "host": {"name": "fedcollm", "top_k": 8},
            "lada_enabled": lada,
            "lada": {
                "hidden_size": 16,
                "n_clusters": 2,
                "kmeans_n_init": 1,
                "epochs_per_round": 1,
                "negative_max_new_tokens": 8,
                "budget": 4,
            },
        }
    )


@pytest.mark.parametrize("lada", [False, True], ids=["alone", "lada"])
def test_one_round_in_process(tmp_path: Path, lada: bool) -> None:
    runner = Runner(_config(tmp_path, lada), audit=True, evaluate_llm=False)
    fed = runner.federation
    llm_before = {k: v.clone() for k, v in fed.server.model.model.state_dict().items()}
    bases_before = {base_fingerprint(c.model) for c in fed.clients}
    assert len(bases_before) == 2  # the tiny presets seed each client's SLM differently

    result = runner.run()

    for name in ("config.toml", "metrics.jsonl", "summary.json"):
        assert (result.run_dir / name).exists()
    llm_after = fed.server.model.model.state_dict()
    assert any(not torch.equal(llm_before[k], llm_after[k]) for k in llm_before)

    # After round 1 every client runs on the server's SLM base.
    slm = host_state(fed.server, FedCoLLMServerState).global_slm()
    assert {base_fingerprint(c.model) for c in fed.clients} == {base_fingerprint(slm)}

    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").open()]
    assert "setup/up/slm_card" in records[0]["traffic"]["bytes"]
    kinds = set(records[1]["traffic"]["bytes"])
    assert {"train/down/global_adapter", "train/up/adapter_update"} <= kinds

    up_strings = {r[2] for r in result.audit.records if r[:2] == ("train/up", "adapter_update")}
    down_strings = {r[2] for r in result.audit.records if r[:2] == ("train/down", "global_adapter")}
    server_losses = records[1]["server_log"]["losses"]
    if lada:
        # Paths rode along both ways, and LaDa trained both directions instead of server KD.
        assert {"slm_0", "slm_1"} <= up_strings and "llm" in down_strings
        pairs = {
            json.loads(line)["filter"] for line in (result.run_dir / "selections.jsonl").open()
        }
        assert {"llm->slm_0", "llm->slm_1", "slm_0->llm", "slm_1->llm"} <= pairs
        assert "kd_slm_to_llm" not in server_losses
    else:
        assert "slm_0" not in up_strings and "llm" not in down_strings
        assert {"kd_llm_to_slm", "kd_slm_to_llm"} <= set(server_losses)

    assert result.audit.leaks(private_texts(fed)) == []
