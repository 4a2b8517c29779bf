"""The decisive experiment's machinery: arm configs, paired statistics and selection logs (the
full table is `python benchmarks/proof.py`, a smoke run `--quick`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

import proof  # noqa: E402

from lada.experiments.config import load_config  # noqa: E402


def test_paired_bootstrap_is_centred_on_the_paired_difference() -> None:
    rng = np.random.default_rng(0)
    a = [rng.integers(0, 2, 400) for _ in range(3)]
    b = [np.where(rng.random(400) < 0.3, 0, x) for x in a]  # b loses ~30% of a's correct items
    out = proof.paired_bootstrap(a, b)
    diff = np.concatenate(a).mean() - np.concatenate(b).mean()
    assert out["diff"] == pytest.approx(diff)
    assert out["ci_low"] < diff < out["ci_high"] and out["ci_low"] > 0
    same = proof.paired_bootstrap(a, a)
    assert same["diff"] == same["ci_low"] == same["ci_high"] == 0.0


def test_capture_ratio_uses_the_oracle_headroom() -> None:
    ones, zeros = [np.ones(100, int)], [np.zeros(100, int)]
    half = [np.array([1, 0] * 50)]
    out = proof.paired_bootstrap(half, zeros, ones, zeros)
    assert out["ratio"] == pytest.approx(0.5)
    assert 0.3 < out["ratio_ci_low"] <= 0.5 <= out["ratio_ci_high"] < 0.7


def test_own_domain_share_and_gold_share_read_the_selection_log() -> None:
    result = {
        "clients": {"0": {"domains": ["gcd"]}, "1": {"domains": ["lcm"]}},
        "selections": [
            {
                "round": 1,
                "party": "client_0",
                "domains": ["gcd", "gcd", "lcm", "x"],
                "pairs": {"gold_fallback": 1, "n_pairs": 4},
            },
            {
                "round": 2,
                "party": "client_1",
                "domains": ["lcm"],
                "pairs": {"gold_fallback": 0, "n_pairs": 1},
                "rewards": {"reward_mean": 0.5},
            },
        ],
    }
    assert proof._own_domain_share(result) == [0.5, 1.0]
    assert proof._gold_share([result]) == pytest.approx(0.2)
    assert proof._reward_means(result) == [None, 0.5]


def test_steps_are_counted_per_model_with_a_server_side_global_slm() -> None:
    rounds = [
        {"client_0": {"steps": 0}, "server": {"steps": 0}},  # round 0: setup, not counted
        {"client_0": {"steps": 80}, "client_1": {"steps": 80}, "server": {"steps": 20}},
        {"client_0": {"steps": 0}, "client_1": {"steps": 0}, "server/slm_global": {"steps": 80}},
    ]
    assert proof._steps_per_model(rounds) == (160.0, 20.0)


def test_steps_to_reach_the_hosts_final_accuracy() -> None:
    arms = {
        "host": {"round_mean": [0.1, 0.2, 0.3], "slm_steps_per_run": 480.0},
        "fast": {"round_mean": [0.1, 0.35, 0.5], "slm_steps_per_run": 480.0},
        "slow": {"round_mean": [0.1, 0.15, 0.2], "slm_steps_per_run": 480.0},
    }
    assert proof._steps_to_host(arms) == {"host": 480, "fast": 240, "slow": None}


def test_every_arm_is_a_valid_config_at_equal_steps(tmp_path: Path) -> None:
    base = load_config(proof.CONFIG)
    lada_run = proof.arm_dir(tmp_path, "lada", 0) / "run"
    lada_run.mkdir(parents=True)
    record = {"round": 1, "party": "client_0", "filter": "llm->slm_0", "item_ids": ["a", "b"]}
    (lada_run / "selections.jsonl").write_text(json.dumps(record) + "\n")
    configs = {arm: proof.arm_config(base, arm, 0, tmp_path) for arm in proof.ARMS}
    assert {c.budget.client_steps for c in configs.values()} == {base.budget.client_steps}
    assert not configs["host"].lada_enabled and configs["host_gate"].host.correctness_gate
    for arm in proof.MATCHED:
        assert configs[arm].lada.match_counts == {"llm->slm_0": [2]}
        assert configs[arm].lada.selection_mode == arm
    assert configs["sft_only"].lada.cd_weight == 0.0
    assert not configs["no_gate"].lada.correctness_gate


@pytest.mark.parametrize("host", sorted(set(proof.HOSTS) - {"fedcot"}))
def test_other_hosts_run_the_same_setting_and_train_the_llm(host: str) -> None:
    base = load_config(proof.CONFIG)
    config = load_config(proof.CONFIG, list(proof.HOSTS[host]))
    assert config.host.name == host
    # Same pool, clients, bases, test items and client budget: only the host changes.
    assert config.data == base.data and config.budget.client_steps == base.budget.client_steps
    assert [s.preset for s in config.slms] == [s.preset for s in base.slms]
    assert config.llm.preset == base.llm.preset
    assert config.budget.server_steps > 0 and config.evaluation.llm_rounds != "none"
    args = proof.argparse.Namespace(config=proof.CONFIG, host=host)
    arms = proof.host_arms(args)
    assert arms[:2] == ["host", "lada"]
    assert ("host_gate" in arms) == ("correctness_gate" in type(config.host).model_fields)


def _fake_run(correct: list[int]) -> dict:
    n = len(correct)
    return {
        "clients": {"0": {"correct": correct, "domains": ["chain_sum"]}},
        "round_accuracy": [0.0, sum(correct) / n],
        "budget": [{}, {"client_0": {"steps": 80}}],
        "selections": [],
        "summary": {"start": {"llm_accuracy": None}, "final": {"llm_accuracy": None}},
        "seconds": 1.0,
    }


def test_an_interrupted_table_pairs_each_contrast_over_the_seeds_both_arms_finished() -> None:
    results = {
        ("host", 0): _fake_run([0, 0, 1, 1]),
        ("host", 1): _fake_run([0, 0, 0, 0]),
        ("lada", 0): _fake_run([1, 1, 1, 1]),  # lada seed 1 never finished
    }
    out = proof.analyse(results, ["host", "lada", "oracle"], [0, 1])
    assert out["arms"]["host"]["seeds"] == [0, 1] and out["arms"]["lada"]["seeds"] == [0]
    assert "oracle" not in out["arms"] and out["capture"] is None
    contrast = out["contrasts"]["LaDa vs host"]
    assert contrast["seeds"] == [0]
    assert contrast["diff"] == pytest.approx(0.5)  # seed 0 only: 1.0 - 0.5


def test_result_commands_do_not_name_folders_outside_the_repository() -> None:
    import common

    assert common._portable("/somewhere/else/proof_runs") == "<proof_runs>"
    inside = str(common.ROOT / "configs" / "proof.toml")
    assert common._portable(inside) == inside  # written relative to the repository later
    assert common._portable("--jobs") == "--jobs"


def test_upstream_adds_one_client_on_the_level_the_teacher_was_not_taught() -> None:
    from lada.models.shipped import SHIPPED

    base = load_config(proof.CONFIG, list(proof.HOSTS["fedcollm"]))
    args = proof.argparse.Namespace(host="fedcollm", upstream=True, quick=False, overrides=[])
    config = load_config(proof.CONFIG, proof._overrides(args))
    split, up = base.data.split, config.data.split
    assert up.n_clients == split.n_clients + 1
    assert up.client_domains[:-1] == split.client_domains  # the other clients are unchanged
    assert up.client_domains[-1] == list(proof.CLIENT_ONLY_DOMAINS)
    # The client's level is exactly what the shipped teacher was never taught.
    teacher = SHIPPED[config.llm.preset].pretrain
    assert set(proof.CLIENT_ONLY_DOMAINS) == set(teacher.held_out_domains)
    assert (up.n_train, up.n_test, config.budget) == (split.n_train, split.n_test, base.budget)


def _llm_run(start: dict[str, list[int]], final: dict[str, list[int]]) -> dict:
    domains = {"0": ["chain_sum"], "1": ["gcd"]}
    run = _fake_run([1, 0])
    run["llm"] = {
        when: {cid: {"correct": bits, "domains": domains[cid]} for cid, bits in scored.items()}
        for when, scored in (("start", start), ("final", final))
    }
    run["llm"]["start"]["1"]["constant"] = [1, 0, 0, 0]  # the pool's commonest gcd answer
    run["llm"]["start"]["0"]["constant"] = [0, 0, 0, 0]
    run["llm"]["consistent_with_run"] = True
    return run


def test_the_llm_direction_pairs_each_arm_before_and_after_on_the_client_only_level() -> None:
    start = {"0": [1, 1, 1, 1], "1": [0, 0, 0, 1]}
    results = {
        ("host", 0): _llm_run(start, {"0": [1, 0, 0, 0], "1": [0, 0, 1, 1]}),
        ("lada", 0): _llm_run(start, {"0": [1, 1, 0, 0], "1": [1, 1, 1, 1]}),
        ("host", 1): _llm_run(start, {"0": [1, 1, 1, 1], "1": [0, 0, 0, 1]}),  # lada 1 unfinished
    }
    out = proof.analyse(results, ["host", "lada"], [0, 1])["llm_direction"]
    only, taught = out["groups"]["client_only"], out["groups"]["taught"]
    # Client 1 holds gcd (the client-only level); client 0's level was taught.
    assert only["arms"]["lada"]["start"] == pytest.approx(0.25)
    assert only["arms"]["lada"]["final"] == pytest.approx(1.0)
    assert only["arms"]["lada"]["gain"]["diff"] == pytest.approx(0.75)
    assert only["arms"]["lada"]["constant_answer"] == pytest.approx(0.25)
    assert taught["arms"]["lada"]["constant_answer"] == 0.0
    assert only["arms"]["host"]["seeds"] == [0, 1]
    assert only["arms"]["host"]["final_per_seed"] == pytest.approx([0.5, 0.25])
    assert taught["arms"]["host"]["gain"]["diff"] == pytest.approx((0.25 + 1.0) / 2 - 1.0)
    # At the end, arms are paired over the seeds both finished (seed 0): 1.0 - 0.5 on gcd.
    versus = only["final_contrasts"]["lada vs host"]
    assert versus["seeds"] == [0] and versus["diff"] == pytest.approx(0.5)
    assert taught["final_contrasts"]["lada vs host"]["diff"] == pytest.approx(0.25)
    assert only["arms"]["host"]["server_client_only_share_by_round"] == []  # host: no filter
    table = proof._llm_direction_table(out)
    assert "levels only a client holds (gcd)" in table and "+75.0" in table


def test_server_selections_share_of_the_client_only_level_per_round() -> None:
    result = {
        "selections": [
            {"round": 1, "party": "server", "domains": ["gcd", "chain_sum"]},
            {"round": 1, "party": "server", "domains": ["gcd", "gcd"]},
            {"round": 1, "party": "client_0", "domains": ["gcd"]},  # a client's: not counted
            {"round": 3, "party": "server", "domains": ["chain_sum"]},
        ]
    }
    assert proof._server_client_only_share(result) == [0.75, None, 0.0]


def test_constant_answers_take_the_pools_commonest_answer_per_domain() -> None:
    from types import SimpleNamespace as Item

    pool = [Item(domain="gcd", answer=a) for a in "1121"] + [Item(domain="lcm", answer="6")]
    items = [Item(domain=d, answer=a) for d, a in [("gcd", "1"), ("gcd", "2"), ("lcm", "6")]]
    assert proof.constant_answers(pool, items) == [1, 0, 1]
    assert proof.constant_answers(pool, [Item(domain="chain_sum", answer="1")]) == [0]


def test_runs_without_per_item_llm_scores_have_no_llm_direction() -> None:
    results = {("host", 0): _fake_run([1, 0]), ("lada", 0): _fake_run([1, 1])}
    out = proof.analyse(results, ["host", "lada"], [0])
    assert out["llm_direction"] is None and proof._llm_direction_table(None) == ""


def test_no_test_question_of_the_upstream_setting_is_trained_on_by_any_party() -> None:
    from lada.experiments.setup import load_split
    from lada.models.pretrain import pretraining_items
    from lada.models.shipped import SHIPPED
    from lada.tasks.holdout import normalize_question

    args = proof.argparse.Namespace(host="fedcollm", upstream=True, quick=False, overrides=[])
    config = load_config(proof.CONFIG, proof._overrides(args))
    split = load_split(config)
    tests = {normalize_question(it.question) for c in split.clients for it in c.test}
    gcd_tests = [it for it in split.clients[-1].test if it.domain == "gcd"]
    assert len(gcd_tests) == config.data.split.n_test  # the client-only level is tested in full
    trained = split.public_pool + [it for c in split.clients for it in c.train]
    assert not tests & {normalize_question(it.question) for it in trained}
    for preset in {config.llm.preset, *(s.preset for s in config.slms)}:
        seen = {
            normalize_question(it.question) for it in pretraining_items(SHIPPED[preset].pretrain)
        }
        assert not tests & seen, f"test questions in {preset}'s pretraining"
