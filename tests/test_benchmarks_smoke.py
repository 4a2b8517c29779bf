"""The benchmark machinery on a minimal config: run cache, token-budget matching, aggregation."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
from rich.console import Console

from lada.experiments.compare import variant_config, variant_overrides
from lada.experiments.config import validate

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

import capacity_gap  # noqa: E402
import common  # noqa: E402
import communication  # noqa: E402
import filter_quality  # noqa: E402
import models  # noqa: E402
import overhead  # noqa: E402
import scale  # noqa: E402
import teacher  # noqa: E402


def minimal_config(tmp_path: Path):
    return validate(
        {
            "name": "smoke",
            "rounds": 2,
            "output_dir": str(tmp_path / "runs"),
            "data": {
                "suite": "default",
                "split": {"n_public": 12, "n_clients": 2, "n_train": 8, "n_test": 2},
            },
            "llm": {"preset": "tiny-1m", "pretrain": {"items_per_domain": 6, "epochs": 1}},
            "slms": [{"preset": "tiny-1m"}],
            "train": {
                "batch_size": 8,
                "max_new_tokens": 12,
                "warmup_local_epochs": 1,
                "generation_batch_size": 16,
            },
            "budget": {"client_steps": 2, "server_steps": 2},  # 12 public items at batch 8
            "evaluation": {"llm_rounds": "none"},
            "host": {"name": "fedcot"},
            "lada": {
                "hidden_size": 8,
                "n_clusters": 2,
                "epochs_per_round": 1,
                "kmeans_n_init": 1,
                "negative_max_new_tokens": 12,
            },
        }
    )


@pytest.fixture(scope="module")
def matched(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("bench")
    common.setup_environment(1)
    cache = common.RunCache(tmp / "cache", Console(quiet=True))
    base = minimal_config(tmp)
    return cache, base, common.equal_budget(cache, base, seed=0)


def test_equal_budget_brings_lada_tokens_to_the_hosts(matched) -> None:
    _, base, match = matched
    host = match.host.slm_public_tokens()
    lada = match.lada.slm_public_tokens()
    assert host > 0 and lada > 0
    # Both take the same optimizer steps; their steps forward different tokens (LaDa's carry
    # negatives, FedCoT's a label task), which the factor on LaDa's steps evens out ...
    for run in (match.host, match.lada):
        steps = [r["budget"][f"client_{k}"]["steps"] for r in run.federated_rounds() for k in "01"]
        assert steps == [base.budget.client_steps] * len(steps)
    assert match.epochs_factor == max(1, round(host / lada))
    # ... and the matched run is no further from the host's budget than the unmatched one.
    equal = match.lada_equal.slm_public_tokens()
    assert abs(equal / host - 1) <= abs(lada / host - 1)
    # Private SFT tokens are identical across variants and excluded from the public count.
    assert (
        match.host.extras["private_tokens_per_round"]
        == match.lada.extras["private_tokens_per_round"]
    )


def test_run_cache_runs_each_config_once(matched) -> None:
    cache, base, match = matched
    folders = sorted(p.name for p in cache.root.iterdir())
    again = common.equal_budget(cache, base, seed=0)
    assert again.host.run_dir == match.host.run_dir
    assert again.lada_equal.run_dir == match.lada_equal.run_dir
    assert sorted(p.name for p in cache.root.iterdir()) == folders


def test_overhead_and_communication_read_the_runs(matched) -> None:
    _, _, match = matched
    result = overhead.host_overhead(
        {"host": [match.host], "lada": [match.lada], "lada_equal": [match.lada_equal]}
    )
    assert "scoring" in result["lada"]["phase_seconds"]
    assert "scoring" not in result["host"]["phase_seconds"]
    assert result["lada"]["lada_phase_seconds"] > 0
    assert math.isfinite(result["lada"]["lada_phase_fraction"])
    kinds = communication.bytes_by_kind([match.lada])
    round_bytes = match.lada.federated_rounds()[0]["traffic"]["total_bytes"]
    assert sum(row["per_round"] for row in kinds.values()) == pytest.approx(round_bytes, rel=0.5)
    hist = filter_quality.selection_histograms(match.lada)
    assert set(hist) == {"0", "1"}
    assert all(h["n_selected"] == sum(h["domains"].values()) for h in hist["0"].values())


def test_sweep_variants_and_extra_overrides(tmp_path: Path) -> None:
    assert variant_overrides("alpha=0.25") == {"lada_enabled": True, "lada.alpha": 0.25}
    assert variant_overrides("lambda=2")["lada.cd_weight"] == 2.0
    with pytest.raises(ValueError, match="unknown"):
        variant_overrides("beta=3")
    config = variant_config(
        minimal_config(tmp_path), "gate_off", 3, tmp_path, extra={"budget.client_steps": 4}
    )
    assert config.seed == 3 and config.budget.client_steps == 4
    assert config.lada.correctness_gate is False


def test_statistics_helpers() -> None:
    assert filter_quality.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert filter_quality.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert filter_quality.spearman([1, 1, 1], [1, 2, 3]) is None
    fit = scale.linear_fit([2, 4, 8], [3.0, 5.0, 9.0])
    assert fit["slope"] == pytest.approx(1.0) and fit["intercept"] == pytest.approx(1.0)
    assert fit["r2"] == pytest.approx(1.0)


def _shape(**changes) -> scale.RoundShape:
    sizes = dict(
        participants=2,
        evaluated=2,
        n_public=24,
        n_train=16,
        n_test=8,
        local_epochs=1,
        client_steps=15,
        batch_size=8,
        max_new_tokens=32,
        negative_max_new_tokens=32,
        selected_fraction=0.5,
        first_round=False,
        gold_tokens=80.0,
        pair_tokens=60.0,
    )
    return scale.RoundShape(**{**sizes, **changes})


def test_scale_cost_model() -> None:
    """The cost model gives back the bytes its constants came from (communication.json: FedCoT +
    LaDa, 2 clients, 24 public items, 11,459.5 B a round), is linear in the clients taking
    part, and counts a client evaluated without taking part as request + plain report."""
    two = scale.predict_round(_shape())
    assert two["bytes"] == pytest.approx(11459.5, rel=0.01)
    eight = scale.predict_round(_shape(participants=8, evaluated=8))
    assert eight["bytes"] == pytest.approx(4 * two["bytes"])
    assert eight["cpu_seconds"] == pytest.approx(4 * two["cpu_seconds"])
    idle = scale.predict_round(_shape(participants=2, evaluated=8))
    c = scale.CONSTANTS
    assert idle["bytes"] - two["bytes"] == pytest.approx(6 * (c.message_bytes + c.report_bytes))
    # The first round adds the LLM's paths on the pool (server) and the local centroid.
    first = scale.predict_round(_shape(first_round=True))
    assert first["cpu_server_seconds"] > 0 == two["cpu_server_seconds"]
    assert scale.mean_batch(20, 8) == pytest.approx(20 / 3) and scale.mean_batch(0, 8) == 0
    assert scale.relative_error(11.0, 10.0) == pytest.approx(0.1)
    assert scale.relative_error(1.0, 0.0) is None


def test_capacity_gap_records_a_learning_curve_per_level(tmp_path: Path, monkeypatch) -> None:
    """The capacity-gap benchmark evaluates every `--eval-every` steps and writes each level."""
    out = tmp_path / "gap.json"
    argv = [
        "capacity_gap.py",
        "--presets", "tiny-1m",
        "--domains", "chain_sum:2", "gcd:1",
        "--train-per-domain", "8",
        "--test-per-domain", "2",
        "--steps", "2",
        "--batch-size", "8",
        "--eval-every", "1",
        "--extra-new-tokens", "0",
        "--out", str(out),
    ]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    capacity_gap.main()
    record = json.loads(out.read_text())
    (run,) = record["runs"]
    assert run["steps"] == 2
    assert [point["step"] for point in run["accuracy_curve"]] == [1, 2]
    assert all({"chain_sum:2", "gcd:1"} <= set(point) for point in run["accuracy_curve"])
    assert set(record["setup"]["constant_answer_accuracy"]) == {"chain_sum:2", "gcd:1", "all"}
    assert run["per_level_n"] == {"chain_sum:2": 2, "gcd:1": 2}


def test_teacher_scores_every_domain_and_reuses_the_pretrained_weights(
    tmp_path: Path, monkeypatch
) -> None:
    """The teacher benchmark pretrains through the experiment's cache, tests every domain
    (held-out ones too), splits out the questions pretraining never saw, and loads the cache
    next time."""
    monkeypatch.setenv("LADA_CACHE", str(tmp_path / "cache"))
    config = tmp_path / "c.toml"
    config.write_text(
        '[llm]\npreset = "tiny-1m"\n[llm.pretrain]\nitems_per_domain = 4\nepochs = 1\n'
        'held_out_domains = ["leg_counting"]\n[train]\nmax_new_tokens = 4\n'
    )
    args = teacher.base_parser("t").parse_args([])
    args.config, args.test_per_domain, args.samples = config, 3, 1
    first = teacher.run(args)
    again = teacher.run(args)
    assert (first["loaded_from_cache"], again["loaded_from_cache"]) == (False, True)
    assert first["pretrain_seconds"] is not None and again["pretrain_seconds"] is None
    domains = {spec.name for spec in teacher.SUITES["default"].domains}
    assert set(first["per_domain_accuracy"]) == domains
    assert first["test_per_domain"] == dict.fromkeys(sorted(domains), 3)
    assert first["pretrain_items"] == 4 * (len(domains) - 1)  # leg_counting left out
    assert first["per_domain_unseen_share"]["leg_counting"] == 1.0


def test_teacher_accuracy_on_unseen_questions_counts_only_those() -> None:
    items = [
        teacher.ReasoningItem(id=str(i), domain=d, question=q, answer="1", answer_kind="numeric")
        for i, (d, q) in enumerate([("a", "q1"), ("a", "q2"), ("b", "q3")])
    ]
    correct = [True, False, True]
    assert teacher.accuracy_by_domain(items, correct) == {"a": 0.5, "b": 1.0}
    assert teacher.accuracy_by_domain(items, correct, {"q1"}) == {"a": 1.0, "b": None}


def test_capacity_gap_tests_on_a_fair_sample_of_a_nearly_used_up_level() -> None:
    """gcd 1 has ~2,500 questions; the last ones generated are mostly coprime pairs, so a test
    split cut from the tail would reward always answering 1 (93% there, half overall)."""
    specs = [capacity_gap.DomainSpec(name="gcd", difficulty=1)]
    train, test = capacity_gap.split_items(specs, 1800, 100, seed=0)
    assert not {it.question for it in train} & {it.question for it in test}
    share = {name: sum(it.answer == "1" for it in part) / len(part)
             for name, part in (("train", train), ("test", test))}  # fmt: skip
    assert abs(share["test"] - share["train"]) < 0.15


def test_models_compares_the_training_path_with_a_bare_loop(tmp_path: Path, monkeypatch) -> None:
    """The models benchmark trains the project path, a bare loop and bf16 autocast on the same
    batches from the same weights; the bare loop reproduces the project's losses."""
    out = tmp_path / "models.json"
    argv = [
        "models.py",
        "--presets", "tiny-1m",
        "--items", "12",
        "--batch-size", "4",
        "--train-steps", "2",
        "--threads", "1",
        "--out", str(out),
    ]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    models.main()
    record = json.loads(out.read_text())
    (row,) = record["rows"]
    assert record["train_steps"] == 2 and len(row["fp32_losses"]) == len(row["bf16_losses"]) == 2
    assert row["train_loss_max_abs_diff"] < 1e-4
    assert row["train_project_tokens_per_s"] > 0 and row["train_bare_tokens_per_s"] > 0
    assert row["bf16_loss_max_rel_diff"] < 5e-2
    assert row["bf16_within_rtol"] == (row["bf16_loss_max_rel_diff"] <= models.BF16_LOSS_RTOL)
    assert 0 <= row["train_pad_share_bucketed"] <= row["train_pad_share_random"] < 1
    assert 0 < row["train_peak_share"] and set(row["train_bare_phase_shares"]) == set(models.PHASES)
    tokens = [3, 5, 4, 4]
    assert models.padding_share(tokens, [[0, 1], [2, 3]]) == pytest.approx(2 / 18)
