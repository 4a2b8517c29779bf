"""The arms a comparison needs beside LaDa: oracle, RHO-LOSS, and random at LaDa's counts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from lada.experiments.selections import SelectionsError, counts_from_run
from lada.hosts.base import ClientParty, ServerParty
from lada.hosts.lada_steps import receive_with_lada
from lada.hosts.payloads import PublicPaths
from lada.method.config import LadaConfig
from lada.method.plugin import Candidate, LadaPlugin, pair_name
from lada.method.rho_loss import (
    IrreducibleLossModel,
    copy_state,
    holdout_items,
    path_losses,
    rho_scores,
)
from lada.method.selection import MatchCountError
from lada.models.presets import load_model
from lada.models.training import sft, sft_on_paths
from lada.models.wrapper import ReasoningModel
from lada.tasks.item import ReasoningItem
from lada.tasks.prompts import gold_path, render_path, render_prompt

PAIR = pair_name("llm", "slm_0")


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def receiver() -> ReasoningModel:
    return load_model("tiny-1m", device="cpu", seed=0, learning_rate=1e-3)


def _item(item_id: str, domain: str, level: int, a: int = 2, b: int = 3) -> ReasoningItem:
    return ReasoningItem(
        id=item_id,
        domain=domain,
        question=f"What is {a} + {b}?",
        answer=str(a + b),
        answer_kind="numeric",
        rationale=f"{a} + {b} = {a + b}",
        difficulty=level,
    )


def _public() -> list[ReasoningItem]:
    """Two domains at levels 1-3, two items each: 12 candidates."""
    return [
        _item(f"{domain}-{level}-{k}", domain, level, a=level + k, b=k + 1)
        for domain in ("add", "mul")
        for level in (1, 2, 3)
        for k in range(2)
    ]


def _candidates(items: list[ReasoningItem]) -> list[Candidate]:
    return [Candidate(it, gold_path(it), -5.0) for it in items]


def _config(**overrides: object) -> LadaConfig:
    base: dict[str, object] = {"hidden_size": 16, "n_clusters": 2, "inference_batch_size": 8}
    return LadaConfig(**(base | overrides))


LOCAL = [_item("own-a", "add", 1), _item("own-b", "add", 2), _item("own-c", "add", 1)]


# ---------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"match_counts": {PAIR: [3]}}, "match_counts: only"),  # 'lada' cannot take a count
        ({"selection_mode": "random", "match_counts": {PAIR: [-1]}}, "match_counts"),
        ({"selection_mode": "random", "match_counts": {"": [1]}}, "match_counts"),
        ({"oracle_levels": {"add": [1]}}, "oracle_levels"),
        ({"selection_mode": "rho_loss"}, "match_counts or budget"),
        ({"selection_mode": "rho_loss", "budget": 2, "rho_il_epochs": 0}, "rho_il_epochs"),
        ({"selection_mode": "rho_loss", "budget": 2, "rho_holdout_fraction": 0}, "rho_holdout"),
    ],
)
def test_selection_fields_are_validated(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        LadaConfig(**fields)


# ---------------------------------------------------------------------- oracle
def test_oracle_takes_own_domain_and_levels_at_the_count(receiver: ReasoningModel) -> None:
    plugin = LadaPlugin(_config(selection_mode="oracle", match_counts={PAIR: [3, 9]}))
    offered = _public()
    first = plugin.select(receiver, _candidates(offered), pair=PAIR, round_idx=1, local_items=LOCAL)
    picked = [c.item for c in first.candidates]
    assert len(picked) == 3 and first.strategy == "oracle"
    assert all((it.domain, it.difficulty) in {("add", 1), ("add", 2)} for it in picked)
    assert first.stats == {"match_count": 3.0, "oracle_matching": 4.0}
    # Round 2 asks for 9 but only 4 candidates match: the oracle does not pad with others.
    second = plugin.select(
        receiver, _candidates(offered), pair=PAIR, round_idx=2, local_items=LOCAL
    )
    assert sorted(c.item.id for c in second.candidates) == [
        "add-1-0",
        "add-1-1",
        "add-2-0",
        "add-2-1",
    ]
    # The subset is seeded: the same config draws the same items.
    twin = LadaPlugin(_config(selection_mode="oracle", match_counts={PAIR: [3, 9]}))
    again = twin.select(receiver, _candidates(offered), pair=PAIR, round_idx=1, local_items=LOCAL)
    assert again.indices.tolist() == first.indices.tolist()


def test_oracle_levels_override_and_no_count_takes_every_match(receiver: ReasoningModel) -> None:
    config = _config(selection_mode="oracle", oracle_levels={"add": [3], "mul": [1]})
    selection = LadaPlugin(config).select(
        receiver, _candidates(_public()), pair=PAIR, round_idx=1, local_items=LOCAL
    )
    # 'mul' is not the receiver's own domain, so its override does not apply to this receiver.
    assert sorted(c.item.id for c in selection.candidates) == ["add-3-0", "add-3-1"]


def test_oracle_and_rho_loss_need_the_receivers_own_items(receiver: ReasoningModel) -> None:
    for config in (
        _config(selection_mode="oracle"),
        _config(selection_mode="rho_loss", budget=2),
    ):
        with pytest.raises(ValueError, match="local items"):
            LadaPlugin(config).select(receiver, _candidates(_public()), pair=PAIR, round_idx=1)


# ---------------------------------------------------------------------- random at counts
def test_random_takes_exactly_the_matched_count(receiver: ReasoningModel) -> None:
    counts = {PAIR: [5, 2, 0, 40], "slm_0->llm": [1]}
    plugin = LadaPlugin(_config(selection_mode="random", match_counts=counts, budget=9))
    offered = _candidates(_public())
    taken = [len(plugin.select(receiver, offered, pair=PAIR, round_idx=r)) for r in range(1, 5)]
    assert taken == [5, 2, 0, 12]  # 0 takes nothing (no fallback); 40 is capped by the offer
    assert len(plugin.select(receiver, offered, pair="slm_0->llm", round_idx=1)) == 1
    with pytest.raises(MatchCountError, match=r"pair 'llm->slm_0' in round 5"):
        plugin.select(receiver, offered, pair=PAIR, round_idx=5)
    with pytest.raises(MatchCountError, match=r"pair 'slm_1->llm' \(round 1\)"):
        plugin.select(receiver, offered, pair="slm_1->llm", round_idx=1)


def test_random_without_counts_keeps_its_budget(receiver: ReasoningModel) -> None:
    plugin = LadaPlugin(_config(selection_mode="random", budget=4))
    selection = plugin.select(receiver, _candidates(_public()), pair=PAIR, round_idx=1)
    assert len(selection) == 4 and selection.stats == {}


# ---------------------------------------------------------------------- RHO-LOSS
def test_rho_scores_and_holdout() -> None:
    assert rho_scores(np.array([3.0, 1.0]), np.array([1.0, 1.5])).tolist() == [2.0, -0.5]
    with pytest.raises(ValueError, match="shape"):
        rho_scores(np.zeros(2), np.zeros(3))
    items = [_item(f"i{k}", "add", 1) for k in range(10)]
    assert holdout_items(items, 1.0, seed=0) == items
    half = holdout_items(items, 0.5, seed=3)
    assert len(half) == 5 and half == holdout_items(items, 0.5, seed=3)
    assert [it.id for it in half] == sorted((it.id for it in half), key=lambda i: int(i[1:]))


def test_holdout_and_losses_refuse_or_return_empty_by_name() -> None:
    items = [_item(f"i{k}", "add", 1) for k in range(10)]
    for fraction in (0.0, 1.5):
        with pytest.raises(ValueError, match=r"rho_holdout_fraction: must be in \(0, 1\], got"):
            holdout_items(items, fraction, seed=0)
    assert holdout_items([], 0.5, seed=0) == []
    assert len(holdout_items(items, 0.01, seed=0)) == 1  # at least one item
    for seed in range(5):  # drawn without replacement: never the same item twice
        held = holdout_items(items, 0.9, seed=seed)
        assert len(held) == 9 and len({it.id for it in held}) == 9
    shapes = r"receiver \(2,\) and irreducible \(3,\) differ in shape"
    with pytest.raises(ValueError, match=shapes):
        rho_scores(np.zeros(2), np.zeros(3))


def test_the_irreducible_loss_model_is_the_seeded_sft_it_documents(
    receiver: ReasoningModel,
) -> None:
    """Trained on the seeded holdout (half of 20 items) for 3 epochs of batches of 4: 9 steps, and
    `train_loss` is the mean of the last epoch's 3 batch losses. The same SFT run by hand on a
    clone gives the same losses and weights."""
    items = [_item(f"i{k}", "add", 1, a=k, b=k + 1) for k in range(20)]
    config = _rho_config(rho_il_epochs=3, rho_holdout_fraction=0.5, seed=5)
    il = IrreducibleLossModel.train(receiver, items, config, pair=PAIR)
    held = holdout_items(items, 0.5, seed=5)
    replay = receiver.clone()
    losses = sft(replay, held, epochs=3, batch_size=4, seed=5, progress=False)
    assert il.n_items == 10 and il.steps == len(losses) == 9
    assert il.train_loss == pytest.approx(float(np.mean(losses[-3:])), rel=1e-6)
    mine, theirs = il.model.trainable_state(), replay.trainable_state()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert path_losses(il.model, [], [], batch_size=4).shape == (0,)

    with pytest.raises(
        ValueError, match=f"{PAIR}: selection_mode 'rho_loss' needs the .* and it has none$"
    ):
        IrreducibleLossModel.train(receiver, [], config, pair=PAIR)
    with pytest.raises(ValueError, match="irreducible-loss model state: unknown format 99"):
        IrreducibleLossModel.from_state(receiver, {"format": 99})
    state = il.state_dict()
    kept = copy_state(state)
    for tensor in kept["weights"].values():
        tensor.zero_()  # a kept copy changed later leaves the state it was taken from alone
    assert all(torch.equal(v, theirs[k]) for k, v in state["weights"].items())


def _rho_setup(receiver: ReasoningModel) -> tuple[list[Candidate], list[ReasoningItem]]:
    """Easy (both models know it), hard (only the IL model learns it), noise (neither can).

    The receiver is first trained on the easy item; its local items repeat the easy and the
    hard items' question and gold path, so the IL model (a copy of the receiver trained on
    them) finds both easy, while the receiver has never seen the hard one. The noise item's
    path is arbitrary letters: hard for both, with the receiver's highest loss.
    """
    easy = _item("easy", "add", 1, a=2, b=2)
    hard = _item("hard", "add", 1, a=7, b=5)
    noise = _item("noise", "add", 1, a=9, b=3)
    sft_on_paths(
        receiver, [render_prompt(easy)] * 8, [gold_path(easy)] * 8,
        epochs=10, batch_size=4, seed=0, progress=False,
    )  # fmt: skip
    local = [
        ReasoningItem.from_dict(source.to_dict() | {"id": f"local-{source.id}-{k}"})
        for source in (easy, hard)
        for k in range(4)
    ]
    candidates = [
        Candidate(easy, gold_path(easy)),
        Candidate(hard, gold_path(hard)),
        Candidate(noise, render_path("qz xv kj wp", "81")),
    ]
    return candidates, local


def _rho_config(**overrides: object) -> LadaConfig:
    base: dict[str, object] = {"rho_il_epochs": 10, "rho_il_batch_size": 4}
    return _config(selection_mode="rho_loss", budget=1, **(base | overrides))


def test_rho_loss_prefers_what_is_learnable_but_not_yet_learned(receiver: ReasoningModel) -> None:
    candidates, local = _rho_setup(receiver)
    plugin = LadaPlugin(_rho_config())
    selection = plugin.select(receiver, candidates, pair=PAIR, round_idx=1, local_items=local)
    assert [c.item.id for c in selection.candidates] == ["hard"]
    assert selection.strategy == "rho_loss"

    prompts = [render_prompt(c.item) for c in candidates]
    paths = [c.path for c in candidates]
    receiver_loss = path_losses(receiver, prompts, paths, batch_size=8)
    il_loss = plugin.irreducible[PAIR].losses(prompts, paths, batch_size=8)
    easy, hard, noise = range(3)
    assert receiver_loss[easy] < receiver_loss[hard] < receiver_loss[noise]  # the construction
    assert il_loss[hard] < receiver_loss[hard] and il_loss[easy] < receiver_loss[hard]
    assert selection.scores is not None
    assert selection.scores.tolist() == pytest.approx((receiver_loss - il_loss).tolist())
    # Hard (IL easy, receiver hard) ranks above easy (both easy) and above noise (both hard),
    # though noise has the receiver's highest loss: not plain loss ranking.
    assert selection.scores[hard] > selection.scores[easy]
    assert selection.scores[hard] > selection.scores[noise]
    assert selection.stats["rho_il_mean"] == pytest.approx(float(il_loss.mean()))
    assert selection.stats["rho_score_mean_selected"] == pytest.approx(selection.scores[hard])
    assert selection.stats["rho_il_items"] == len(local)


def test_rho_loss_model_is_trained_once_and_round_trips(
    receiver: ReasoningModel, tmp_path: Path
) -> None:
    candidates, local = _rho_setup(receiver)
    plugin = LadaPlugin(_rho_config(match_counts={PAIR: [1, 2]}))
    first = plugin.select(receiver, candidates, pair=PAIR, round_idx=1, local_items=local)
    il_model = plugin.irreducible[PAIR]
    plugin.save(tmp_path / "lada.pt")
    restored = LadaPlugin.load(tmp_path / "lada.pt")

    # The receiver moves on; the IL model must not (trained once, at the first selection).
    sft_on_paths(
        receiver, [render_prompt(candidates[1].item)], [candidates[1].path],
        epochs=2, batch_size=1, seed=1, progress=False,
    )  # fmt: skip
    second = plugin.select(receiver, candidates, pair=PAIR, round_idx=2, local_items=local)
    assert plugin.irreducible[PAIR] is il_model and len(second) == 2
    resumed = restored.select(receiver, candidates, pair=PAIR, round_idx=2, local_items=None)
    assert resumed.scores is not None and second.scores is not None
    assert resumed.scores.tolist() == pytest.approx(second.scores.tolist(), abs=1e-6)
    assert resumed.indices.tolist() == second.indices.tolist()
    assert resumed.stats == pytest.approx(second.stats)
    assert first.scores is not None and not np.allclose(first.scores, second.scores)
    # A state taken before the IL model is rebuilt still carries it.
    pending = LadaPlugin.load(tmp_path / "lada.pt").state_dict()["irreducible"][PAIR]
    assert set(pending["weights"]) == set(il_model.state_dict()["weights"])


# ---------------------------------------------------------------------- the selection record
def test_receive_with_lada_records_the_mode_and_arms_see_only_client_data() -> None:
    slm = load_model("tiny-1m", device="cpu", seed=0, learning_rate=1e-3, label="slm_0")
    public = _public()
    paths = PublicPaths(
        sender="llm",
        item_ids=[it.id for it in public],
        paths=[gold_path(it) for it in public],
        logprobs=[-5.0] * len(public),
    )
    config = _config(selection_mode="oracle", match_counts={PAIR: [2]}, negative_max_new_tokens=4)
    client = ClientParty(name="client_0", model=slm, plugin=LadaPlugin(config), train=LOCAL)
    train = SimpleNamespace(max_new_tokens=4, public_epochs=1, batch_size=4)
    by_id = {it.id: it for it in public}
    record = receive_with_lada(
        client, paths, by_id, LOCAL, round_idx=1, train=train, steps=2, seed=0
    )
    assert record["mode"] == "oracle" and record["strategy"] == "oracle"
    assert len(record["item_ids"]) == 2
    assert all(i.startswith(("add-1-", "add-2-")) for i in record["item_ids"])
    assert record["selection_stats"] == {"match_count": 2.0, "oracle_matching": 4.0}
    # The server's `local_items` are the public pool (the candidates), not data of its own.
    server_config = _config(selection_mode="oracle", negative_max_new_tokens=4)
    server = ServerParty(name="server", model=slm, plugin=LadaPlugin(server_config))
    slm_paths = PublicPaths(sender="slm_0", item_ids=paths.item_ids, paths=paths.paths)
    with pytest.raises(ValueError, match="no local data of its own"):
        receive_with_lada(
            server, slm_paths, by_id, public, round_idx=1, train=train, steps=2, seed=0
        )


# ---------------------------------------------------------------------- the reader
def _write(run_dir: Path, records: list[dict[str, object]]) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r) for r in records]
    (run_dir / "selections.jsonl").write_text("\n".join(lines) + "\n\n")
    return run_dir


def _record(round_idx: int, pair: str, n: int) -> dict[str, object]:
    return {
        "round": round_idx,
        "party": "client_0",
        "filter": pair,
        "strategy": "scored",
        "item_ids": [f"p{k}" for k in range(n)],
    }


def test_counts_from_run_reads_each_pair_and_round(tmp_path: Path) -> None:
    run = _write(
        tmp_path / "run",
        [
            _record(1, "llm->slm_0", 4),
            _record(1, "slm_0->llm", 6),
            _record(2, "llm->slm_0", 0),
            _record(3, "llm->slm_0", 7),
            _record(3, "slm_0->llm", 2),  # no record in round 2: it took nothing then
        ],
    )
    assert counts_from_run(run) == {"llm->slm_0": [4, 0, 7], "slm_0->llm": [6, 0, 2]}
    # The result is a valid match_counts for the arms that take a count.
    assert LadaConfig(selection_mode="random", match_counts=counts_from_run(run)).match_counts


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([_record(1, "llm->slm_0", 2), _record(1, "llm->slm_0", 3)], "two records for round 1"),
        ([_record(0, "llm->slm_0", 2)], "'round' must be 1, 2"),
        ([{"round": 1, "filter": "llm->slm_0"}], "lacks \\['item_ids'\\]"),
    ],
)
def test_counts_from_run_refuses_ambiguous_records(
    tmp_path: Path, records: list[dict[str, object]], message: str
) -> None:
    with pytest.raises(SelectionsError, match=message):
        counts_from_run(_write(tmp_path / "run", records))


def test_counts_from_run_needs_the_file(tmp_path: Path) -> None:
    with pytest.raises(SelectionsError, match="no such file"):
        counts_from_run(tmp_path)
