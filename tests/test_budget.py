"""One training budget per party per round, honoured and counted the same way by every host."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from rich.console import Console

from lada.experiments.compare import variant_config
from lada.experiments.config import ConfigError, load_config, validate
from lada.experiments.runner import Runner, RunResult
from lada.hosts.base import ClientParty, ServerParty
from lada.hosts.budget import Budget, share_steps
from lada.hosts.config import CrossLMConfig, FedCoTConfig
from lada.hosts.crosslm import CrossLM, CrossLMClientState, CrossLMServerState
from lada.hosts.fedcollm import FedCoLLMServerState
from lada.hosts.fedcot import FedCoT
from lada.hosts.lada_steps import receive_with_lada
from lada.hosts.parties import host_state
from lada.hosts.payloads import PublicPaths
from lada.hosts.steps import GATE_REPLACED_COUNTER, gate_paths
from lada.method.config import LadaConfig
from lada.method.contrastive import PairLogprobs
from lada.method.pairs import DistillPair
from lada.method.plugin import DistillBatchSet, LadaPlugin
from lada.models.guards import NONFINITE_COUNTER
from lada.models.presets import load_model
from lada.models.training import TrainUsage, fit
from lada.models.wrapper import ReasoningModel, path_has_ended
from lada.tasks.item import ReasoningItem
from lada.tasks.prompts import gold_path, render_prompt

QUIET = Console(quiet=True)
CLIENT_STEPS, SERVER_STEPS = 3, 2


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _item(k: int) -> ReasoningItem:
    return ReasoningItem(
        id=f"it{k}",
        domain="chain_sum",
        question=f"{k} + {k + 1} = ?",
        answer=str(2 * k + 1),
        answer_kind="numeric",
        rationale=f"{k} + {k + 1} = {2 * k + 1}",
    )


ITEMS = [_item(k) for k in range(4)]


@pytest.fixture(scope="module")
def model() -> ReasoningModel:
    return load_model("tiny-1m", device="cpu", seed=0)


def _tokens(model: ReasoningModel, prompt: str, path: str) -> int:
    """A sequence's tokens counted by hand: BOS, prompt, path, end-of-sequence if it ended."""
    count = len(model.tokenizer(prompt + path, add_special_tokens=False)["input_ids"])
    return count + int(model.add_bos) + int(path_has_ended(path))


# --------------------------------------------------------------------------- fit, steps mode
def _toy_loss(model: ReasoningModel, seen: list[list[int]], nan_first: bool = False):
    param = next(p for p in model.model.parameters() if p.requires_grad)

    def loss_fn(batch: list[int]) -> torch.Tensor:
        seen.append(list(batch))
        if nan_first and len(seen) == 1:
            return param.sum() * float("nan")
        return (param.float() ** 2).mean()

    return loss_fn


def test_fit_takes_exactly_the_steps_whatever_the_number_of_examples(model) -> None:
    # Fewer examples than the steps need: reshuffled passes, each covering every example.
    seen: list[list[int]] = []
    usage = TrainUsage()
    losses = fit(
        model,
        [5, 6, 7],
        _toy_loss(model, seen),
        steps=5,
        batch_size=2,
        seed=0,
        progress=False,
        example_tokens=[1, 10, 100],
        usage=usage,
    )
    assert len(losses) == 5 and usage.steps == 5
    assert sorted(i for b in seen[:2] for i in b) == [0, 1, 2]
    assert sorted(i for b in seen[2:4] for i in b) == [0, 1, 2]
    assert usage.tokens == sum(sum((1, 10, 100)[i] for i in b) for b in seen)
    # More examples than the steps reach: stop after the steps, mid-pass.
    seen.clear()
    assert len(fit(model, [3] * 10, _toy_loss(model, seen), steps=3, batch_size=2, seed=0)) == 3
    assert len(seen) == 3
    # No examples: no steps, and no endless loop.
    seen.clear()
    assert fit(model, [], _toy_loss(model, seen), steps=4, batch_size=2, seed=0) == []
    assert seen == []
    with pytest.raises(ValueError, match="exactly one of epochs or steps"):
        fit(model, [1], _toy_loss(model, seen), epochs=1, steps=1, batch_size=1, seed=0)


def test_a_skipped_batch_does_not_use_up_a_step(model) -> None:
    seen: list[list[int]] = []
    counts: dict[str, float] = {}

    class Log:
        def count(self, name: str, value: float = 1.0) -> None:
            counts[name] = counts.get(name, 0) + value

    losses = fit(
        model,
        [1, 2, 3, 4],
        _toy_loss(model, seen, nan_first=True),
        steps=3,
        batch_size=2,
        seed=0,
        log=Log(),
        progress=False,
    )
    assert len(losses) == 3 and len(seen) == 4 and counts[NONFINITE_COUNTER] == 1


# --------------------------------------------------------------------------- LaDa's tokens
def _batch_set(model: ReasoningModel) -> DistillBatchSet:
    pairs = [
        DistillPair(it, render_prompt(it), gold_path(it), f" {k} k\nno answer", "gold")
        for k, it in enumerate(ITEMS[:3])
    ]
    n = len(pairs)
    return DistillBatchSet(
        pair="llm->slm_0",
        round_idx=1,
        pairs=pairs,
        kept=np.arange(n),
        ref=PairLogprobs(torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)),
        ref_losses=np.ones(n),
        gap=None,
    )


@pytest.mark.parametrize("cd_weight", [1.0, 0.0])
def test_lada_counts_prompts_positives_and_negatives_of_every_step(model, cd_weight) -> None:
    receiver = model.clone()
    batch_set = _batch_set(receiver)
    plugin = LadaPlugin(LadaConfig(cd_weight=cd_weight))
    usage = TrainUsage()
    # A batch holds every pair, so each of the 4 steps forwards all of them.
    history = plugin.fit(receiver, batch_set, steps=4, batch_size=8, seed=0, usage=usage)
    per_step = sum(_tokens(receiver, p.prompt, p.positive) for p in batch_set.pairs)
    if cd_weight > 0:  # the contrastive term backpropagates through the negatives too
        per_step += sum(_tokens(receiver, p.prompt, p.negative) for p in batch_set.pairs)
    assert len(history) == usage.steps == 4
    assert usage.tokens == 4 * per_step
    assert plugin.fit(receiver, batch_set, steps=0, batch_size=8, seed=0) == []


def test_receive_with_lada_logs_the_steps_and_tokens_of_its_batches(model, monkeypatch) -> None:
    plugin = LadaPlugin(
        LadaConfig(hidden_size=8, n_clusters=2, kmeans_n_init=1, negative_max_new_tokens=8)
    )
    client = ClientParty(name="client_0", model=model.clone(), plugin=plugin, public_pool=ITEMS)
    client.model.name = "slm_0"
    prepared: list[DistillBatchSet] = []
    real_prepare = plugin.prepare

    def spy(receiver: Any, selection: Any, **kwargs: Any) -> DistillBatchSet:
        prepared.append(real_prepare(receiver, selection, **kwargs))
        return prepared[-1]

    monkeypatch.setattr(plugin, "prepare", spy)
    paths = PublicPaths(
        sender="llm",
        item_ids=[it.id for it in ITEMS],
        paths=[gold_path(it) for it in ITEMS],
        logprobs=[-1.0] * len(ITEMS),
        token_counts=[10] * len(ITEMS),
    )
    train = validate({}).train.model_copy(update={"batch_size": 64, "max_new_tokens": 8})
    receive_with_lada(
        client, paths, client.public_by_id(), ITEMS[:2], round_idx=1, train=train, steps=3, seed=0
    )
    (batch_set,) = prepared
    assert len(batch_set) > 0
    hand = sum(
        _tokens(client.model, p.prompt, p.positive) + _tokens(client.model, p.prompt, p.negative)
        for p in batch_set.pairs
    )
    spent = client.log.to_dict()["budget"]["slm_0"]
    assert spent == {"steps": 3, "tokens": 3 * hand}


# --------------------------------------------------------------------------- old names
@pytest.mark.parametrize(
    ("override", "replacement"),
    [
        ("train.public_epochs=1", "budget.client_steps"),
        ("train.llm_epochs=1", "budget.server_steps"),
        ("host.client_public_epochs=1", "budget.client_steps"),
        ("host.server_public_epochs=1", "budget.server_steps"),
        ("host.server_kd_epochs=1", "budget.server_steps"),
    ],
)
def test_removed_fields_fail_naming_their_replacement(override: str, replacement: str) -> None:
    host = {"host.client": "fedmkt", "host.server_p": "fedmkt", "host.server_k": "fedcollm"}
    name = next((v for k, v in host.items() if override.startswith(k)), "fedcot")
    old = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"{old}: removed; set {replacement}"):
        load_config(None, [f'host.name="{name}"', override])


def test_removed_field_in_a_file_and_in_a_compare_override(tmp_path: Path) -> None:
    path = tmp_path / "old.toml"
    path.write_text("[train]\npublic_epochs = 2\n")
    with pytest.raises(ConfigError, match="train.public_epochs: removed; set budget.client_steps"):
        load_config(path)
    base = validate({})
    with pytest.raises(ValueError, match="train.public_epochs: removed"):
        variant_config(base, "lada", 0, tmp_path, extra={"train.public_epochs": 2})


def test_budget_validates_and_shares_steps() -> None:
    with pytest.raises(ConfigError, match="budget.client_steps"):
        load_config(None, ["budget.client_steps=-1"])
    with pytest.raises(ConfigError, match="budget.steps"):
        load_config(None, ["budget.steps=3"])
    assert [share_steps(10, 3, k) for k in range(3)] == [4, 3, 3]
    assert sum(share_steps(7, 4, k) for k in range(4)) == 7


def test_host_gate_variant(tmp_path: Path) -> None:
    base = validate({"host": {"name": "fedcot"}})
    gated = variant_config(base, "host_gate", 0, tmp_path)
    assert gated.host.correctness_gate and not gated.lada_enabled
    with pytest.raises(ValueError, match="no correctness_gate option"):
        variant_config(validate({"host": {"name": "fedmkt"}}), "host_gate", 0, tmp_path)


# --------------------------------------------------------------------------- the gate
def test_gate_replaces_wrong_paths_by_gold_and_counts_them(model) -> None:
    party = ClientParty(name="client_0", model=model)
    paths = [gold_path(ITEMS[0]), " 1 + 2 = 4\n#### 4\n", " the sum is 5", gold_path(ITEMS[3])]
    out = gate_paths(party, ITEMS, paths)
    # Wrong answer, and no `####` line: both replaced; right paths kept as they are.
    assert out == [paths[0], gold_path(ITEMS[1]), gold_path(ITEMS[2]), paths[3]]
    assert party.log.counters[GATE_REPLACED_COUNTER] == 2
    assert party.log.counters["gate_checked"] == 4


@pytest.mark.parametrize("gate", [True, False])
def test_fedcot_distils_gated_paths(model, monkeypatch, gate: bool) -> None:
    host = FedCoT(
        FedCoTConfig(correctness_gate=gate),
        validate({}).train.model_copy(update={"batch_size": 8}),
        False,
        Budget(client_steps=2),
    )
    client = ClientParty(name="client_0", model=model.clone(), public_pool=ITEMS)
    wrong = " 2 + 3 = 6\n#### 6\n"
    payload = PublicPaths(
        sender="llm",
        item_ids=[it.id for it in ITEMS],
        paths=[gold_path(ITEMS[0]), wrong, gold_path(ITEMS[2]), gold_path(ITEMS[3])],
    )
    trained: list[str] = []
    real = client.model.score_paths

    def spy(prompts, paths, *, grad=False):
        trained.extend(paths)
        return real(prompts, paths, grad=grad)

    monkeypatch.setattr(client.model, "score_paths", spy)
    host._multitask_distill(client, payload, seed=0)
    assert client.log.budget[client.model.name].steps == 2
    assert (wrong in trained) is not gate
    assert (gold_path(ITEMS[1]) in trained) is gate
    assert client.log.counters.get(GATE_REPLACED_COUNTER, 0) == (1 if gate else 0)


# --------------------------------------------------------------------------- every host
def _config(tmp_path: Path, host: str, lada: bool, rounds: int = 1) -> dict[str, Any]:
    lora = {"lora": {"r": 2}} if host == "fedcollm" else {}
    return {
        "name": f"budget-{host}",
        "rounds": rounds,
        "output_dir": str(tmp_path),
        "device": "cpu",
        "data": {"split": {"n_public": 6, "n_clients": 2, "n_train": 2, "n_test": 1}},
        "llm": {"preset": "tiny-1m", "pretrain": None},
        "slms": [{"preset": "tiny-1m", **lora}],
        "train": {
            "local_epochs": 0,
            "warmup_local_epochs": 0,
            "batch_size": 4,
            "max_new_tokens": 8,
            "generation_batch_size": 8,
        },
        # 6 public items at batch 4: the host's steps run into a second pass; LaDa's 2 selected
        # items make one short batch, so its 3 steps revisit them three times.
        "budget": {"client_steps": CLIENT_STEPS, "server_steps": SERVER_STEPS},
        "evaluation": {"llm_rounds": "none"},
        "checkpoint": {"enabled": False},
        "host": {"name": host},
        "lada_enabled": lada,
        "lada": {
            "hidden_size": 8,
            "n_clusters": 2,
            "kmeans_n_init": 1,
            "epochs_per_round": 1,
            "negative_max_new_tokens": 8,
            "budget": 2,
        },
    }


_RUNS: dict[tuple[str, bool], RunResult] = {}


def _run(tmp_path_factory: pytest.TempPathFactory, host: str, lada: bool) -> RunResult:
    """Each (host, arm) once per session; FedCoLLM over two rounds (the timing test needs it)."""
    if (host, lada) not in _RUNS:
        folder = tmp_path_factory.mktemp(f"{host}-{lada}")
        rounds = 2 if host == "fedcollm" else 1
        config = validate(_config(folder, host, lada, rounds))
        _RUNS[host, lada] = Runner(config, console=QUIET, evaluate_llm=False).run()
    return _RUNS[host, lada]


def _records(result: RunResult) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("lada", [False, True], ids=["host", "lada"])
@pytest.mark.parametrize("host", ["fedcot", "fedcollm", "fedmkt"])
def test_every_arm_spends_the_same_steps(tmp_path_factory, host: str, lada: bool) -> None:
    result = _run(tmp_path_factory, host, lada)
    for record in _records(result)[1:]:
        budget = record["budget"]
        clients = [budget[f"client_{k}"] for k in range(2)]
        if host == "fedcollm" and not lada:
            # The aggregated SLM learns on the server, once for both clients.
            assert budget["server/slm_global"]["steps"] == CLIENT_STEPS
            assert all(c["steps"] == 0 for c in clients)
        else:
            assert all(c["steps"] == CLIENT_STEPS and c["tokens"] > 0 for c in clients)
        llm_steps = 0 if host == "fedcot" else SERVER_STEPS  # FedCoT never updates the LLM
        assert budget["server"]["steps"] == llm_steps
        assert (budget["server"]["tokens"] > 0) == (llm_steps > 0)
        # The record is the parties' own round logs, summed per party.
        for k, client in enumerate(clients):
            assert client["steps"] == sum(
                u["steps"] for u in record["clients"][str(k)]["log"]["budget"].values()
            )
    rounds = len(_records(result)) - 1
    assert result.summary["budget"]["llm"]["steps"] == rounds * llm_steps


@pytest.mark.slow
def test_server_bootstrap_takes_a_share_of_every_cluster(tmp_path_factory) -> None:
    result = _run(tmp_path_factory, "fedmkt", True)
    lines = (result.run_dir / "selections.jsonl").read_text().splitlines()
    strategies = {(r["party"], r["strategy"].split("+")[0]) for r in map(json.loads, lines)}
    assert ("server", "round1_fraction_per_cluster") in strategies
    assert ("server", "round1_nearest_clusters") not in strategies
    assert ("client_0", "round1_nearest_clusters") in strategies


@pytest.mark.slow
def test_fedcollm_arms_are_evaluated_after_the_same_distillations(tmp_path_factory) -> None:
    plain = _run(tmp_path_factory, "fedcollm", False)
    global_slm = host_state(plain.federation.server, FedCoLLMServerState).global_slm()
    slm = global_slm.trainable_state()
    for client in plain.federation.clients:
        # Evaluated on the adapter distilled in the last round, not one round behind it.
        held = client.model.trainable_state()
        assert all(torch.equal(held[k], slm[k]) for k in slm)
    records = _records(plain)
    for record in records[1:]:
        assert record["traffic"]["messages"]["evaluate/down/global_adapter"] == 2
        for k in range(2):
            assert record["clients"][str(k)]["log"]["counters"]["distilled_adapter_loaded"] == 1
    # The next round does not send the adapter the clients already hold.
    first, second = (r["traffic"]["bytes"]["train/down/global_adapter"] for r in records[1:])
    assert second < first / 10
    # With LaDa the SLM learns on the client before its evaluation in the same round.
    lada = _records(_run(tmp_path_factory, "fedcollm", True))
    for record in lada[1:]:
        assert "evaluate/down/global_adapter" not in record["traffic"]["messages"]
        assert all(record["budget"][f"client_{k}"]["steps"] == CLIENT_STEPS for k in range(2))


# --------------------------------------------------------------------------- CrossLM, by step
@pytest.mark.parametrize("lada", [False, True], ids=["host", "lada"])
def test_crosslm_spends_the_budget_on_the_kept_items(model, lada: bool) -> None:
    train = validate({}).train.model_copy(
        update={"batch_size": 4, "local_epochs": 0, "max_new_tokens": 8}
    )
    host = CrossLM(CrossLMConfig(), train, lada, Budget(client_steps=3, server_steps=2))
    small = LadaConfig(hidden_size=8, n_clusters=2, kmeans_n_init=1, negative_max_new_tokens=8)
    server = ServerParty(name="server", model=model.clone(), public_pool=ITEMS)
    server.model.name = "llm"
    clients = []
    for k in range(2):
        client = ClientParty(name=f"client_{k}", model=model.clone(), client_id=k, train=ITEMS)
        client.model.name = f"slm_{k}"
        host_state(client, CrossLMClientState).generated_by_id = {it.id: it for it in ITEMS}
        clients.append(client)
    if lada:
        for party in (server, *clients):
            party.plugin = LadaPlugin(small)
    paths = [gold_path(it) for it in ITEMS]
    state = host_state(server, CrossLMServerState)
    state.kept = list(ITEMS)
    state.llm_paths = PublicPaths(
        sender="llm",
        item_ids=[it.id for it in ITEMS],
        paths=paths,
        logprobs=[-1.0] * len(ITEMS),
        token_counts=server.model.path_token_counts(paths),
    )
    payload = host.send_train(server, 1, [0, 1])[0]
    replies = {c.client_id: host.client_train(c, payload, 1) for c in clients}
    host.receive_train(server, replies, 1)
    for client in clients:
        assert client.log.budget[client.model.name].steps == 3
    assert server.log.budget["llm"].steps == 2  # shared over the two clients' pairs with LaDa


def test_with_more_clients_than_server_steps_the_pairs_without_a_step_sit_out_in_turn(
    monkeypatch,
) -> None:
    """Five client offers, two server steps a round: two pairs train one step each, the other
    three skip selection, negatives and their filter update (no rewards of untrained items),
    and the pairs that train rotate so that every client's pair trains within three rounds."""
    from types import SimpleNamespace

    import lada.hosts.base as base
    from lada.hosts.config import FedCoLLMConfig, TrainConfig
    from lada.hosts.parties import RoundLog
    from lada.hosts.registry import make_host
    from lada.models.training import TrainUsage

    served: list[tuple[int, str, int]] = []

    def fake_receive(party, paths, items_by_id, local, *, round_idx, train, steps, seed):
        served.append((round_idx, paths, steps))
        party.log.spend(party.model.name, TrainUsage(steps=steps, tokens=10 * steps))
        return {}

    monkeypatch.setattr(base, "receive_with_lada", fake_receive)
    host = make_host(FedCoLLMConfig(), TrainConfig(), True, Budget(server_steps=2))
    offers = [(f"client {k}", 1000 + k) for k in range(5)]
    trained: set[str] = set()
    for round_idx in (1, 2, 3):
        server = SimpleNamespace(log=RoundLog(), model=SimpleNamespace(name="llm"))
        host.server_lada(server, offers, {}, round_idx)  # type: ignore[arg-type]
        this_round = [(p, s) for r, p, s in served if r == round_idx]
        assert [s for _, s in this_round] == [1, 1]
        assert server.log.counters["pairs_without_steps"] == 3
        assert server.log.budget["llm"].steps == 2
        trained |= {p for p, _ in this_round}
    assert trained == {f"client {k}" for k in range(5)}


def test_with_enough_server_steps_every_pair_trains_in_offer_order(monkeypatch) -> None:
    from types import SimpleNamespace

    import lada.hosts.base as base
    from lada.hosts.config import FedCoLLMConfig, TrainConfig
    from lada.hosts.parties import RoundLog
    from lada.hosts.registry import make_host
    from lada.models.training import TrainUsage

    served: list[tuple[str, int]] = []

    def fake_receive(party, paths, items_by_id, local, *, round_idx, train, steps, seed):
        served.append((paths, steps))
        party.log.spend(party.model.name, TrainUsage(steps=steps, tokens=steps))
        return {}

    monkeypatch.setattr(base, "receive_with_lada", fake_receive)
    host = make_host(FedCoLLMConfig(), TrainConfig(), True, Budget(server_steps=10))
    server = SimpleNamespace(log=RoundLog(), model=SimpleNamespace(name="llm"))
    host.server_lada(server, [(f"c{k}", k) for k in range(3)], {}, 4)  # type: ignore[arg-type]
    assert served == [("c0", 4), ("c1", 3), ("c2", 3)]
    assert server.log.counters.get("pairs_without_steps", 0) == 0
