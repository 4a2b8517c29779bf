"""Every host, with and without LaDa, end to end on a tiny config: run folder and privacy."""

from __future__ import annotations

import json

import pytest

from lada.experiments.config import validate
from lada.experiments.runner import Runner, private_texts
from lada.hosts.registry import HOSTS


def tiny_config(tmp_path, host: str, lada: bool, **extra) -> dict:
    slms = [{"preset": "tiny-1m"}]
    if host == "fedcollm":
        slms = [{"preset": "tiny-1m", "lora": {"r": 4}}]
    if host == "fedmkt":
        slms = [{"preset": "tiny-1m"}, {"preset": "tiny-gpt2-2m"}]
    config = {
        "name": "e2e",
        "rounds": 1,
        "output_dir": str(tmp_path / "runs"),
        "data": {
            "suite": "default",
            "split": {"n_public": 16, "n_clients": 2, "n_train": 12, "n_test": 4},
        },
        "llm": {"preset": "tiny-1m", "pretrain": {"items_per_domain": 8, "epochs": 1}},
        "slms": slms,
        "train": {"batch_size": 8, "max_new_tokens": 24, "warmup_local_epochs": 1},
        # One pass over the 16 public items at batch 8 (the steps one public epoch gave).
        "budget": {"client_steps": 2, "server_steps": 2},
        "host": {"name": host},
        "lada_enabled": lada,
        "lada": {
            "hidden_size": 16,
            "n_clusters": 3,
            "epochs_per_round": 1,
            "kmeans_n_init": 1,
            "negative_max_new_tokens": 24,
        },
    }
    config.update(extra)
    return config


@pytest.mark.slow
@pytest.mark.parametrize("lada", [False, True], ids=["host", "lada"])
@pytest.mark.parametrize("host", sorted(HOSTS))
def test_host_runs_end_to_end_and_keeps_private_items_private(tmp_path, host: str, lada: bool):
    config = validate(tiny_config(tmp_path, host, lada))
    runner = Runner(config, audit=True)
    before = {
        n: p.detach().clone() for n, p in runner.federation.server.model.model.named_parameters()
    }
    result = runner.run()

    files = {p.name for p in result.run_dir.iterdir()}
    assert {
        "config.toml",
        "config.json",
        "metrics.jsonl",
        "selections.jsonl",
        "summary.json",
    } <= files
    records = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == [0, 1]
    last = records[-1]
    assert set(last["clients"]) == {"0", "1"}
    for client in last["clients"].values():
        assert 0.0 <= client["accuracy"] <= 1.0 and client["n"] == 4
        assert client["log"]["timings"]["local_training"] > 0
    assert "llm" in last and 0.0 <= last["llm"]["accuracy"] <= 1.0
    assert last["traffic"]["total_bytes"] > 0
    assert any(k.startswith("evaluate/up/eval_report") for k in last["traffic"]["bytes"])

    kept = last["server_log"]["counters"].get("kept", 0)
    if lada and not (host == "crosslm" and kept == 0):
        selections = [
            json.loads(x) for x in (result.run_dir / "selections.jsonl").read_text().splitlines()
        ]
        filters = {s["filter"] for s in selections}
        assert {"llm->slm_0", "llm->slm_1"} <= filters
        for s in selections:
            assert len(s["item_ids"]) == len(s["domains"]) > 0

    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["host"] == host and summary["lada"] is lada

    leaks = result.audit.leaks(private_texts(result.federation))
    assert leaks == []
    assert len(result.audit.records) > 0

    llm_changed = any(
        not (p.detach() == before[n]).all()
        for n, p in result.federation.server.model.model.named_parameters()
    )
    if host == "fedcot":
        assert not llm_changed, "FedCoT leaves the LLM frozen"
    elif host == "crosslm":
        # CrossLM trains the LLM only on kept generations; a barely pretrained LLM may write none.
        assert llm_changed == (kept > 0)
    else:
        assert llm_changed


def test_audit_catches_a_leaked_private_question(tmp_path) -> None:
    """The privacy check is not vacuous: a payload carrying a private question is flagged."""
    from lada.federation.inprocess import PayloadAudit
    from lada.hosts.payloads import PublicItems

    config = validate(tiny_config(tmp_path, "fedcot", False))
    runner = Runner(config, audit=True)
    secret = runner.federation.clients[0].train[0]
    audit = PayloadAudit()
    audit.record("train/up", PublicItems(items=[secret.to_dict()]))
    assert audit.leaks(private_texts(runner.federation))
