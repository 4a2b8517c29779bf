"""The decisive experiment: does LaDa help FedCoT, by how much, and which part of it helps?

Every arm runs the same config (`configs/proof.toml`) at the same optimizer steps per party and
round (`budget`), on the same seeds, so that each comparison is paired item by item:

| arm | what it isolates |
|---|---|
| host | FedCoT alone (multitask distillation on every teacher path) |
| host_gate | FedCoT with LaDa's gate and gold fallback; no filter, no contrastive term |
| lada | FedCoT + LaDa as configured |
| random | LaDa's loss on a uniform draw of exactly the count LaDa took (pair, round) |
| oracle | the same count from the receiver's own domains at learnable levels (the headroom) |
| rho_loss | the same count by RHO-LOSS (receiver loss minus an irreducible loss) |
| all | LaDa's loss on every candidate (filter off) |
| no_gate | LaDa with the gate off (the paper's preference by role) |
| sft_only | LaDa's selections with SFT only (contrastive term off) |

Runs are cached per arm and seed under `--cache-dir` (an interrupted run resumes from its last
round checkpoint; a finished one is read back), the frozen teacher's paths are written once per
seed and shared by every arm, and arms run `--jobs` at a time. The report gives per-seed and
pooled accuracies, paired per-item differences with bootstrap 95% confidence intervals, the
oracle's headroom and the capture ratio (lada - random) / (oracle - random), the optimizer steps
each arm needs to reach the host's final accuracy, and what each selector took (share of the
receiver's own domain, per round). It writes JSON, a Markdown table and a plot.

    python benchmarks/proof.py                                  # seeds 0-4, every arm
    python benchmarks/proof.py --seeds 100 101 102 --tag dev    # development seeds
    python benchmarks/proof.py --quick                          # a smoke run (tests)
    python benchmarks/proof.py --host fedcollm --seeds 0 1 2    # host and host + LaDa on FedCoLLM

With `--host fedcollm|fedmkt|crosslm` the same setting runs on another host (`HOSTS`): host alone
and host + LaDa (and host + gate where the host has that option), with the LLM trained too and
scored before and after, in `proof_<host>.json`.

The SLM -> LLM direction needs a level only the clients know. `--upstream` adds a fourth client
holding gcd 1 (`UPSTREAM`), the level the shipped teacher was never taught, and scores the LLM
item by item on every client's test items before round 1 and after the last round: the table
then says how much the LLM gained on the level only a client holds, with and without LaDa,
paired per item (`proof_<host>_upstream.json`).

    python benchmarks/proof.py --host fedcollm --upstream --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import (
    RESULTS,
    ROOT,
    base_parser,
    make_console,
    markdown_table,
    setup_environment,
    write_result,
)
from rich.console import Console

from lada.experiments.checkpoint import load_latest
from lada.experiments.compare import variant_config
from lada.experiments.config import ExperimentConfig, load_config
from lada.experiments.runner import Runner
from lada.experiments.selections import counts_from_run
from lada.experiments.setup import build_server, load_split
from lada.hosts.steps import write_public_paths
from lada.models.training import evaluate

CONFIG = ROOT / "configs" / "proof.toml"
#: Arm -> config overrides (dotted keys). Every arm keeps the base config's budget.
ARMS: dict[str, dict[str, Any]] = {
    "host": {"lada_enabled": False},
    "host_gate": {"lada_enabled": False, "host.correctness_gate": True},
    "lada": {"lada_enabled": True},
    "random": {"lada_enabled": True, "lada.selection_mode": "random"},
    "oracle": {"lada_enabled": True, "lada.selection_mode": "oracle"},
    "rho_loss": {"lada_enabled": True, "lada.selection_mode": "rho_loss"},
    "all": {"lada_enabled": True, "lada.selection_mode": "all"},
    "no_gate": {"lada_enabled": True, "lada.correctness_gate": False},
    "sft_only": {"lada_enabled": True, "lada.cd_weight": 0.0},
}
#: Host -> overrides that put the same setting (pool, clients, bases, client budget) on it. FedCoT
#: is the setting itself; the others also train the LLM (`budget.server_steps` of its own per
#: round), so their runs score the LLM before and after. FedCoLLM averages LoRA adapters (it needs
#: one on the SLMs); FedMKT and CrossLM take the SLMs as they are.
HOSTS: dict[str, tuple[str, ...]] = {
    "fedcot": (),
    "fedcollm": (
        "host.name=fedcollm",
        "slms.0.lora.r=8",
        "slms.0.lora.alpha=16.0",
        "budget.server_steps=20",
        "evaluation.llm_rounds=first_last",
    ),
    "fedmkt": ("host.name=fedmkt", "budget.server_steps=20", "evaluation.llm_rounds=first_last"),
    "crosslm": ("host.name=crosslm", "budget.server_steps=20", "evaluation.llm_rounds=first_last"),
}
#: `--upstream`: a fourth client holds gcd 1, the level of the pool the shipped teacher was never
#: taught (its record's `held_out_domains`). The teacher answers about a tenth of fresh gcd 1
#: questions; the client SLM base about a third, and SFT on 400 gold paths lifts it to about half
#: (100-200 steps). Always answering the commonest answer, 1, scores 40-45% there, so the table
#: gives that constant's accuracy beside the LLM's: a gain up to it can be learnt from the answer
#: distribution alone. That client's SLM is the only party that holds the level, so the LLM's
#: accuracy there before and after the rounds measures what flows from the SLMs to the LLM.
UPSTREAM = (
    "data.split.n_clients=4",
    'data.split.client_domains=[["chain_sum"], ["leg_counting"], ["basic_arithmetic"], ["gcd"]]',
)
#: Levels the shipped teacher was not taught that a client holds: where the SLM -> LLM
#: direction is scored.
CLIENT_ONLY_DOMAINS = ("gcd",)
#: Arms the other hosts run by default: the host's gate variant only where the host has the
#: option (FedCoLLM and FedMKT distil on the items' gold paths and CrossLM's generated items have
#: no answer independent of the LLM's, so a gate would replace nothing there).
HOST_ARMS = ("host", "lada", "host_gate")
#: Arms that take exactly the item count the 'lada' arm took, pair by pair and round by round.
MATCHED = ("random", "oracle", "rho_loss")
#: Arms run first: the comparison itself and the headroom it is judged against.
PRIORITY = ("lada", "host", "random", "oracle")
#: (label, arm a, arm b): the paired differences a - b the table reports.
CONTRASTS: list[tuple[str, str, str]] = [
    ("LaDa vs host", "lada", "host"),
    ("headroom: oracle vs random", "oracle", "random"),
    ("filter: LaDa vs random", "lada", "random"),
    ("LaDa vs RHO-LOSS", "lada", "rho_loss"),
    ("filter vs all candidates", "lada", "all"),
    ("contrastive: LaDa vs SFT only", "lada", "sft_only"),
    ("gate: LaDa vs gate off", "lada", "no_gate"),
    ("gate alone: host+gate vs host", "host_gate", "host"),
    ("LaDa vs host+gate", "lada", "host_gate"),
]
QUICK = [
    "rounds=1",
    "data.split.n_public=24",
    "data.split.n_train=8",
    "data.split.n_test=6",
    "budget.client_steps=2",
    "train.generation_batch_size=32",
    "lada.hidden_size=16",
    "lada.n_clusters=3",
    "lada.kmeans_n_init=1",
    "lada.epochs_per_round=1",
    "lada.rho_il_epochs=1",
]
#: Seeds results are reported on; LaDa's knobs are chosen on DEV_SEEDS, never on these.
REPORT_SEEDS = (0, 1, 2, 3, 4)
DEV_SEEDS = (100, 101, 102)
BOOTSTRAP_SAMPLES = 2000
HEADROOM_GOAL = 0.10


# ------------------------------------------------------------------------------ running arms
@dataclass(frozen=True)
class Job:
    """One (arm, seed) run: where it lives and what it needs."""

    arm: str
    seed: int
    config_path: str
    overrides: tuple[str, ...]
    root: str
    threads: int


def frozen_llm(config: ExperimentConfig) -> bool:
    """FedCoT never updates the LLM: one set of its paths serves every arm, and it is not scored."""
    return config.host.name == "fedcot"


def _overrides(args: argparse.Namespace) -> list[str]:
    """The config overrides of a command: the host's, the upstream client's (`--upstream`), the
    smoke scale's, then the user's."""
    upstream = UPSTREAM if getattr(args, "upstream", False) else ()
    return [*HOSTS[args.host], *upstream, *(QUICK if args.quick else []), *args.overrides]


def arm_dir(root: Path, arm: str, seed: int) -> Path:
    return root / arm / f"seed{seed}"


def arm_config(base: ExperimentConfig, arm: str, seed: int, root: Path) -> ExperimentConfig:
    """The base config as one arm at one seed; matched arms read the 'lada' run's counts."""
    extra = dict(ARMS[arm])
    if arm in MATCHED:
        extra["lada.match_counts"] = counts_from_run(arm_dir(root, "lada", seed) / "run")
    config = variant_config(base, "lada", seed, root, extra)
    return config.model_copy(update={"name": arm, "output_dir": str(arm_dir(root, arm, seed))})


def teacher_paths_file(root: Path, seed: int) -> Path:
    return root / "teacher" / f"seed{seed}.json"


def _seed_server(base: ExperimentConfig, seed: int) -> tuple[Any, Any]:
    """This seed's split and the server as every arm starts it (before any round)."""
    config = base.model_copy(update={"seed": seed})
    split = load_split(config)
    return split, build_server(config, split.public_pool, Console(stderr=True, quiet=True))


def _write_atomically(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data))
    os.replace(partial, path)


def write_teacher_paths(base: ExperimentConfig, seed: int, root: Path) -> None:
    """The frozen teacher's paths on this seed's public pool, written once for every arm."""
    path = teacher_paths_file(root, seed)
    if path.exists():
        return
    _, server = _seed_server(base, seed)
    paths = write_public_paths(
        server,
        server.public_pool,
        max_new_tokens=base.train.max_new_tokens,
        batch_size=base.train.generation_batch_size,
    )
    _write_atomically(path, vars(paths))


def llm_start_file(root: Path, seed: int) -> Path:
    return root / "llm_start" / f"seed{seed}.json"


def write_llm_start(base: ExperimentConfig, seed: int, root: Path) -> None:
    """Per item, whether the LLM as every arm starts it (no host trains it in setup) answers each
    client's test items: the 'before' of the SLM -> LLM direction, written once per seed."""
    path = llm_start_file(root, seed)
    if path.exists():
        return
    split, server = _seed_server(base, seed)
    scored = _llm_per_client(base, server.model, [part.test for part in split.clients])
    for cid, part in enumerate(split.clients):
        scored[str(cid)]["constant"] = constant_answers(split.public_pool, part.test)
    _write_atomically(path, scored)


def constant_answers(pool: Sequence[Any], items: Sequence[Any]) -> list[int]:
    """Per item, whether always giving the commonest gold answer of the pool's items of its
    domain is right: what the LLM could score from the pool's answer distribution alone."""
    from collections import Counter

    common: dict[str, Counter[str]] = {}
    for item in pool:
        common.setdefault(item.domain, Counter())[item.answer] += 1
    return [
        int(it.domain in common and common[it.domain].most_common(1)[0][0] == it.answer)
        for it in items
    ]


def _llm_per_client(config: ExperimentConfig, model: Any, tests: Sequence[Any]) -> dict[str, Any]:
    """The LLM's per-item correctness on each client's test items, keyed by client id."""
    out = {}
    for cid, items in enumerate(tests):
        scored = evaluate(
            model,
            items,
            batch_size=config.train.generation_batch_size,
            max_new_tokens=config.train.max_new_tokens,
        )
        out[str(cid)] = {
            "correct": [int(p.correct) for p in scored.predictions],
            "domains": sorted({it.domain for it in items}),
        }
    return out


def read_finished(args: argparse.Namespace) -> dict[tuple[str, int], dict[str, Any]]:
    """The (arm, seed) runs of `args` whose per-item results are already in the cache."""
    root = Path(args.cache_dir)
    found = {}
    for arm in args.arms:
        for seed in args.seeds:
            items = arm_dir(root, arm, seed) / "items.json"
            if items.exists():
                found[(arm, seed)] = json.loads(items.read_text())
    return found


def run_job(job: Job) -> dict[str, Any]:
    """Run (or resume, or read back) one arm at one seed; returns its per-item results."""
    setup_environment(job.threads)  # a spawned worker: its own threads, no progress bars
    root = Path(job.root)
    folder = arm_dir(root, job.arm, job.seed)
    items_file = folder / "items.json"
    if items_file.exists():
        return json.loads(items_file.read_text())
    base = load_config(job.config_path, list(job.overrides))
    config = arm_config(base, job.arm, job.seed, root)
    run_dir = folder / "run"
    quiet = Console(stderr=True, quiet=True)
    started = time.perf_counter()
    if not (run_dir / "summary.json").exists():
        if (run_dir / "checkpoints").exists():
            runner = Runner(config, run_dir=run_dir, console=quiet, resume=True)
        else:
            frozen = frozen_llm(config)
            runner = Runner(config, run_dir=run_dir, console=quiet, evaluate_llm=not frozen)
            if frozen:
                from lada.hosts.fedcot import FedCoTServerState
                from lada.hosts.parties import host_state
                from lada.hosts.payloads import PublicPaths

                shared = json.loads(teacher_paths_file(root, job.seed).read_text())
                host_state(runner.server, FedCoTServerState).llm_paths = PublicPaths(**shared)
        runner.run()
    federation = load_latest(run_dir, warn=lambda _: None).state["federation"]
    result = _per_item_results(config, run_dir, federation)
    if not frozen_llm(config) and llm_start_file(root, job.seed).exists():
        result["llm"] = _llm_items(config, run_dir, federation, llm_start_file(root, job.seed))
    result.update(arm=job.arm, seed=job.seed, seconds=time.perf_counter() - started)
    items_file.write_text(json.dumps(result))
    return result


def _per_item_results(config: ExperimentConfig, run_dir: Path, federation: Any) -> dict[str, Any]:
    """Per-item correctness of every client's final SLM (`federation`: the run's last
    checkpoint), and the run's records."""
    clients = {}
    for client in federation.clients:
        scored = evaluate(
            client.model,
            client.test,
            batch_size=config.train.generation_batch_size,
            max_new_tokens=config.train.max_new_tokens,
        )
        clients[str(client.client_id)] = {
            "correct": [int(p.correct) for p in scored.predictions],
            "domains": sorted({it.domain for it in client.train}),
        }
    rounds = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x]
    selections = [
        json.loads(x) for x in (run_dir / "selections.jsonl").read_text().splitlines() if x
    ]
    summary = json.loads((run_dir / "summary.json").read_text())
    rescored = [sum(c["correct"]) / len(c["correct"]) for c in clients.values() if c["correct"]]
    # Greedy decoding of the same final models on the same items: must repeat the run's own
    # final evaluation exactly, or the paired statistics would not describe the reported run.
    consistent = all(
        abs(acc - summary["final"]["slm_accuracy"][cid]) < 1e-9
        for cid, acc in zip(clients, rescored)
    )
    return {
        "consistent_with_run": consistent,
        "clients": clients,
        "round_accuracy": [r["mean_slm_accuracy"] for r in rounds],
        "budget": [r.get("budget", {}) for r in rounds],
        "summary": summary,
        "selections": [
            {
                k: s.get(k)
                for k in ("round", "party", "filter", "strategy", "domains", "pairs", "rewards")
            }
            for s in selections
        ],
    }


def _llm_items(
    config: ExperimentConfig, run_dir: Path, federation: Any, start_file: Path
) -> dict[str, Any]:
    """The LLM's per-item correctness before round 1 (shared by the arms) and after the run, on
    every client's test items; each is checked against the run's own round-0 and last scores."""
    final = _llm_per_client(config, federation.server.model, [c.test for c in federation.clients])
    start = json.loads(start_file.read_text())
    rounds = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x]
    scored = [r["llm"]["accuracy"] for r in rounds if "llm" in r]

    def pooled(per_client: dict[str, Any]) -> float:
        bits = [b for c in per_client.values() for b in c["correct"]]
        return sum(bits) / len(bits) if bits else 0.0

    return {
        "start": start,
        "final": final,
        "consistent_with_run": len(scored) >= 2
        and abs(pooled(start) - scored[0]) < 1e-9
        and abs(pooled(final) - scored[-1]) < 1e-9,
    }


def run_all(args: argparse.Namespace, console: Console) -> dict[tuple[str, int], dict[str, Any]]:
    """Every (arm, seed): the teacher's paths first, then unmatched arms, then matched ones."""
    root = Path(args.cache_dir)
    overrides = tuple(_overrides(args))
    base = load_config(args.config, list(overrides))
    for seed in args.seeds:
        if frozen_llm(base):  # its paths are written once and shared by every arm
            write_teacher_paths(base, seed, root)
        else:  # the LLM every arm starts from, scored per item once
            write_llm_start(base, seed, root)
    done: dict[tuple[str, int], dict[str, Any]] = {}
    arms = [a for a in args.arms if a in ARMS]
    if any(a in MATCHED for a in arms) and "lada" not in arms:
        arms.append("lada")
    # The arms that decide (LaDa, the host, the headroom) first, so that an interrupted command
    # has the most important runs; matched arms after the 'lada' run of their seed.
    phases = [
        [a for a in PRIORITY if a in arms and a not in MATCHED],
        [a for a in PRIORITY if a in arms and a in MATCHED],
        [a for a in arms if a not in PRIORITY],
    ]
    for phase in phases:
        jobs = [
            Job(arm, seed, str(args.config), overrides, str(root), args.threads)
            for seed in args.seeds
            for arm in phase
        ]
        if args.jobs > 1 and len(jobs) > 1:
            context = multiprocessing.get_context("spawn")
            with context.Pool(args.jobs, maxtasksperchild=1) as pool:
                for result in pool.imap_unordered(run_job, jobs):
                    done[(result["arm"], result["seed"])] = result
                    _progress(console, result, len(done), len(args.seeds) * len(arms))
        else:
            for job in jobs:
                result = run_job(job)
                done[(result["arm"], result["seed"])] = result
                _progress(console, result, len(done), len(args.seeds) * len(arms))
    return done


def _progress(console: Console, result: dict[str, Any], n_done: int, n_all: int) -> None:
    console.print(
        f"[dim]{n_done}/{n_all} {result['arm']} seed {result['seed']}: "
        f"{_pooled(result):.1%} ({result['seconds']:.0f} s)[/]"
    )


# -------------------------------------------------------------------------------- statistics
def _pooled(result: dict[str, Any]) -> float:
    bits = [b for c in result["clients"].values() for b in c["correct"]]
    return sum(bits) / len(bits) if bits else 0.0


def _vectors(results: dict[tuple[str, int], dict[str, Any]], arm: str, seeds: Sequence[int]):
    """Per seed, the arm's per-item correctness over all clients, in a fixed item order."""
    import numpy as np

    return [
        np.array([b for _, c in sorted(results[(arm, s)]["clients"].items()) for b in c["correct"]])
        for s in seeds
    ]


def paired_bootstrap(
    a: list, b: list, c: list | None = None, d: list | None = None, seed: int = 0
) -> dict[str, float]:
    """Mean of a - b over all items (seeds pooled), with a 95% CI from resampling items within
    each seed; with c, d also the ratio (a - b) / (c - d) under the same resamples."""
    import numpy as np

    rng = np.random.default_rng(seed)
    diff = np.concatenate(a).mean() - np.concatenate(b).mean()
    draws, ratios = [], []
    for _ in range(BOOTSTRAP_SAMPLES):
        picks = [rng.integers(0, len(x), len(x)) for x in a]
        num = (
            np.concatenate([x[p] for x, p in zip(a, picks)]).mean()
            - np.concatenate([x[p] for x, p in zip(b, picks)]).mean()
        )
        draws.append(num)
        if c is not None and d is not None:
            den = (
                np.concatenate([x[p] for x, p in zip(c, picks)]).mean()
                - np.concatenate([x[p] for x, p in zip(d, picks)]).mean()
            )
            ratios.append(num / den if den > 0 else np.nan)
    out = {
        "diff": float(diff),
        "ci_low": float(np.percentile(draws, 2.5)),
        "ci_high": float(np.percentile(draws, 97.5)),
        "se": float(np.std(draws)),
    }
    if ratios:
        valid = np.array(ratios)[~np.isnan(ratios)]
        num = diff
        den = np.concatenate(c).mean() - np.concatenate(d).mean()
        out["ratio"] = float(num / den) if den > 0 else float("nan")
        out["ratio_ci_low"] = float(np.percentile(valid, 2.5)) if len(valid) else float("nan")
        out["ratio_ci_high"] = float(np.percentile(valid, 97.5)) if len(valid) else float("nan")
    return out


def _steps_per_model(budget: list[dict[str, Any]]) -> tuple[float, float]:
    """Optimizer steps one SLM and the LLM took over a run's rounds (round 0 is setup).

    An SLM's steps are its client's mean plus those of a global SLM the server trains for every
    client (FedCoLLM's aggregated adapter), so host and host + LaDa compare per model."""
    slm = llm = 0.0
    for spent in budget[1:]:
        clients = [v.get("steps", 0) for k, v in spent.items() if k.startswith("client_")]
        slm += sum(clients) / len(clients) if clients else 0.0
        slm += sum(v.get("steps", 0) for k, v in spent.items() if k.startswith("server/"))
        llm += spent.get("server", {}).get("steps", 0)
    return slm, llm


def _own_domain_share(result: dict[str, Any]) -> list[float | None]:
    """Per round, the share of the items the clients' selections took from their own domains."""
    domains = {f"client_{cid}": set(c["domains"]) for cid, c in result["clients"].items()}
    return _share_by_round((r, domains.get(r["party"], set())) for r in result["selections"])


def _share_by_round(picks: Iterable[tuple[dict[str, Any], set[str]]]) -> list[float | None]:
    """Per round (1..last), the share of the selected items whose domain is in the set given
    with their selection record; None for a round with no such item."""
    by_round: dict[int, list[int]] = {}
    for record, wanted in picks:
        by_round.setdefault(record["round"], []).extend(
            int(d in wanted) for d in record.get("domains") or []
        )
    last = max(by_round, default=0)
    return [
        (sum(by_round[r]) / len(by_round[r])) if by_round.get(r) else None
        for r in range(1, last + 1)
    ]


def _mean_rows(rows: list[list[float | None]]) -> list[float | None]:
    """Column means of ragged rows, ignoring missing values."""
    width = max((len(r) for r in rows), default=0)
    out: list[float | None] = []
    for k in range(width):
        values = [r[k] for r in rows if k < len(r) and r[k] is not None]
        out.append(sum(values) / len(values) if values else None)
    return out


def _reward_means(result: dict[str, Any]) -> list[float | None]:
    """Per round, the mean reward the clients' filters were trained on."""
    by_round: dict[int, list[float]] = {}
    for record in result["selections"]:
        mean = (record.get("rewards") or {}).get("reward_mean")
        if mean is not None and mean == mean:
            by_round.setdefault(record["round"], []).append(mean)
    last = max(by_round, default=0)
    return [
        sum(by_round[r]) / len(by_round[r]) if by_round.get(r) else None for r in range(1, last + 1)
    ]


def _llm(result: dict[str, Any], when: str) -> float | None:
    """The LLM's accuracy on the union of the clients' test items at the run's start or end."""
    value = result["summary"].get(when, {}).get("llm_accuracy")
    return None if value is None else float(value)


def _gold_share(results: list[dict[str, Any]]) -> float:
    """Share of LaDa's training pairs whose positive is the gold path (teacher path wrong)."""
    gold = pairs = 0
    for result in results:
        for record in result["selections"]:
            counts = record.get("pairs") or {}
            gold += counts.get("gold_fallback", 0)
            pairs += counts.get("n_pairs", 0)
    return gold / pairs if pairs else 0.0


def analyse(
    results: dict[tuple[str, int], dict[str, Any]], arms: Sequence[str], seeds: Sequence[int]
) -> dict[str, Any]:
    import numpy as np

    per_arm: dict[str, Any] = {}
    for arm in arms:
        own = [s for s in seeds if (arm, s) in results]  # an interrupted table: what ran
        if not own:
            continue
        finals = [_pooled(results[(arm, s)]) for s in own]
        curves = np.array([results[(arm, s)]["round_accuracy"] for s in own])
        spent = [_steps_per_model(results[(arm, s)]["budget"]) for s in own]
        per_arm[arm] = {
            "seeds": own,
            "per_seed": dict(zip(map(str, own), finals)),
            "mean": float(np.mean(finals)),
            "sd": float(np.std(finals, ddof=1)) if len(finals) > 1 else 0.0,
            "n_items_per_run": int(len(_vectors(results, arm, own[:1])[0])),
            "round_mean": curves.mean(0).tolist(),
            "round_ci95": _ci95(curves).tolist(),
            "slm_steps_per_run": float(np.mean([slm for slm, _ in spent])),
            "llm_steps_per_run": float(np.mean([llm for _, llm in spent])),
            "own_domain_share_by_round": [_own_domain_share(results[(arm, s)]) for s in own],
            "own_domain_share_mean": _mean_rows(
                [_own_domain_share(results[(arm, s)]) for s in own]
            ),
            "gold_fallback_share": _gold_share([results[(arm, s)] for s in own]),
            "reward_mean_by_round": _mean_rows([_reward_means(results[(arm, s)]) for s in own]),
            "seconds": [results[(arm, s)]["seconds"] for s in own],
            # The SLM -> LLM direction, where the host trains the LLM (None: not scored).
            "llm_accuracy_start": [_llm(results[(arm, s)], "start") for s in own],
            "llm_accuracy_final": [_llm(results[(arm, s)], "final") for s in own],
        }
    contrasts = {}
    for label, a, b in CONTRASTS:
        if a in per_arm and b in per_arm:
            both = _common(results, seeds, a, b)
            contrasts[label] = {
                "a": a,
                "b": b,
                "seeds": both,
                **paired_bootstrap(_vectors(results, a, both), _vectors(results, b, both)),
            }
    capture = None
    if all(x in per_arm for x in ("lada", "random", "oracle")):
        both = _common(results, seeds, "lada", "random", "oracle")
        capture = paired_bootstrap(
            _vectors(results, "lada", both),
            _vectors(results, "random", both),
            _vectors(results, "oracle", both),
            _vectors(results, "random", both),
        )
        capture["seeds"] = both
        if "rho_loss" in per_arm:
            rho = _common(results, seeds, "rho_loss", "random", "oracle")
            capture["rho_loss"] = paired_bootstrap(
                _vectors(results, "rho_loss", rho),
                _vectors(results, "random", rho),
                _vectors(results, "oracle", rho),
                _vectors(results, "random", rho),
            )
            capture["rho_loss"]["seeds"] = rho
    efficiency = _steps_to_host(per_arm)
    upstream = _llm_direction(results, arms, seeds)
    headroom = contrasts.get("headroom: oracle vs random", {}).get("diff")
    return {
        "arms": per_arm,
        "contrasts": contrasts,
        "capture": capture,
        "steps_to_host_final": efficiency,
        "llm_direction": upstream,
        "headroom": headroom,
        "valid_setting": headroom is not None and headroom >= HEADROOM_GOAL,
        "seed_spread_max": max((v["sd"] for v in per_arm.values()), default=0.0),
    }


def _llm_vectors(
    results: dict[tuple[str, int], dict[str, Any]],
    arm: str,
    seeds: Sequence[int],
    when: str,
    client_only: bool,
) -> list[Any]:
    """Per seed, the LLM's per-item correctness `when` ('start'/'final') on the test items of the
    clients whose levels the teacher was not taught (`client_only`) or of the others."""
    import numpy as np

    out = []
    for seed in seeds:
        picked = _clients_in_group(results[(arm, seed)]["llm"][when], client_only)
        out.append(np.array([b for c in picked for b in c["correct"]], dtype=float))
    return out


def _clients_in_group(per_client: dict[str, Any], client_only: bool) -> list[dict[str, Any]]:
    """The clients (in id order) whose levels are all client-only (`client_only`) or not."""
    only = set(CLIENT_ONLY_DOMAINS)
    ordered = sorted(per_client.items(), key=lambda kv: int(kv[0]))
    return [c for _, c in ordered if (set(c["domains"]) <= only) == client_only]


def _server_client_only_share(result: dict[str, Any]) -> list[float | None]:
    """Per round, the share of the server's (slm_k -> llm) selections from the client-only
    levels: where the LLM's filters sent its steps."""
    only = set(CLIENT_ONLY_DOMAINS)
    return _share_by_round((r, only) for r in result["selections"] if r["party"] == "server")


def _constant_share(
    results: dict[tuple[str, int], dict[str, Any]],
    arm: str,
    seeds: Sequence[int],
    client_only: bool,
) -> float | None:
    """Accuracy of always giving the pool's commonest answer of each item's domain, on the items
    of `_llm_vectors` (None for a cache written before it was recorded)."""
    bits: list[int] = []
    for seed in seeds:
        for c in _clients_in_group(results[(arm, seed)]["llm"]["start"], client_only):
            if "constant" not in c:
                return None
            bits += c["constant"]
    return sum(bits) / len(bits) if bits else None


def _llm_direction(
    results: dict[tuple[str, int], dict[str, Any]], arms: Sequence[str], seeds: Sequence[int]
) -> dict[str, Any] | None:
    """The SLM -> LLM direction, item by item: for the levels only a client holds and for the
    levels the teacher was taught, each arm's LLM before and after (paired on the same items),
    and the arms against each other at the end. None when no run scored its LLM per item."""
    import numpy as np

    scored = [a for a in arms if any("llm" in results.get((a, s), {}) for s in seeds)]
    if not scored:
        return None
    out: dict[str, Any] = {"client_only_domains": list(CLIENT_ONLY_DOMAINS), "groups": {}}
    for group, client_only in (("client_only", True), ("taught", False)):
        rows: dict[str, Any] = {}
        for arm in scored:
            own = [s for s in seeds if "llm" in results.get((arm, s), {})]
            start = _llm_vectors(results, arm, own, "start", client_only)
            final = _llm_vectors(results, arm, own, "final", client_only)
            if not sum(len(v) for v in start):
                continue
            rows[arm] = {
                "seeds": own,
                "n_items_per_run": int(len(start[0])),
                "constant_answer": _constant_share(results, arm, own, client_only),
                "start": float(np.concatenate(start).mean()),
                "final": float(np.concatenate(final).mean()),
                "final_per_seed": [float(v.mean()) for v in final],
                "consistent_with_run": all(
                    results[(arm, s)]["llm"]["consistent_with_run"] for s in own
                ),
                "gain": paired_bootstrap(final, start),
                "server_client_only_share_by_round": _mean_rows(
                    [_server_client_only_share(results[(arm, s)]) for s in own]
                ),
            }
        versus = {}
        for a, b in (("lada", "host"), ("lada", "host_gate"), ("host_gate", "host")):
            if a in rows and b in rows:
                both = [s for s in rows[a]["seeds"] if s in rows[b]["seeds"]]
                versus[f"{a} vs {b}"] = {
                    "seeds": both,
                    **paired_bootstrap(
                        _llm_vectors(results, a, both, "final", client_only),
                        _llm_vectors(results, b, both, "final", client_only),
                    ),
                }
        if rows:
            out["groups"][group] = {"arms": rows, "final_contrasts": versus}
    return out


def _common(results: dict[tuple[str, int], Any], seeds: Sequence[int], *arms: str) -> list[int]:
    """The seeds every one of `arms` has finished: paired comparisons use only those."""
    return [s for s in seeds if all((arm, s) in results for arm in arms)]


def _ci95(curves: Any) -> Any:
    """Half-width of a normal 95% interval of the mean over seeds (rows), per round."""
    import numpy as np

    if len(curves) < 2:
        return 0 * curves[0]
    return 1.96 * curves.std(0, ddof=1) / np.sqrt(len(curves))


def _steps_to_host(per_arm: dict[str, Any]) -> dict[str, int | None]:
    """Client optimizer steps (public-data budget) each arm needs to reach the host's final mean
    accuracy, read at round ends (None: not reached within the run)."""
    if "host" not in per_arm:
        return {}
    target = per_arm["host"]["round_mean"][-1]
    out: dict[str, int | None] = {}
    for arm, row in per_arm.items():
        rounds = len(row["round_mean"]) - 1
        per_round = row["slm_steps_per_run"] / max(rounds, 1)
        reached = next((r for r, acc in enumerate(row["round_mean"]) if acc >= target), None)
        out[arm] = None if reached is None else int(round(reached * per_round))
    return out


# ------------------------------------------------------------------------------------ report
def report(result: dict[str, Any], console: Console) -> str:
    analysis = result["analysis"]
    arms = analysis["arms"]
    rows = [
        [
            arm,
            ", ".join(map(str, row["seeds"])),
            f"{100 * row['mean']:.1f} ± {100 * row['sd']:.1f}",
            " / ".join(f"{100 * v:.1f}" for v in row["per_seed"].values()),
            " → ".join(f"{100 * v:.1f}" for v in row["round_mean"]),
            f"{row['slm_steps_per_run']:.0f}",
            f"{row['llm_steps_per_run']:.0f}",
            str(analysis["steps_to_host_final"].get(arm, "")),
        ]
        for arm, row in arms.items()
    ]
    text = markdown_table(
        [
            "arm",
            "seeds",
            "final SLM acc. (%)",
            "per seed",
            "by round (mean)",
            "steps / SLM",
            "LLM steps",
            "steps to host's final",
        ],
        rows,
    )
    text += "\n" + markdown_table(
        ["paired contrast", "seeds", "difference (points)", "95% CI", "SE"],
        [
            [
                label,
                ", ".join(map(str, c["seeds"])),
                f"{100 * c['diff']:+.1f}",
                f"[{100 * c['ci_low']:+.1f}, {100 * c['ci_high']:+.1f}]",
                f"{100 * c['se']:.1f}",
            ]
            for label, c in analysis["contrasts"].items()
        ],
    )
    capture = analysis.get("capture")
    if capture:
        text += (
            f"\nCapture (lada - random) / (oracle - random): {capture['ratio']:.2f} "
            f"[{capture['ratio_ci_low']:.2f}, {capture['ratio_ci_high']:.2f}]"
        )
        if "rho_loss" in capture:
            rho = capture["rho_loss"]
            text += (
                f"; RHO-LOSS (rho_loss - random) / (oracle - random): {rho['ratio']:.2f} "
                f"[{rho['ratio_ci_low']:.2f}, {rho['ratio_ci_high']:.2f}]"
            )
        text += "\n"
    shares = {
        arm: row["own_domain_share_mean"]
        for arm, row in arms.items()
        if any(v is not None for v in row["own_domain_share_mean"])
    }
    if shares:
        width = max(len(v) for v in shares.values())
        text += "\n" + markdown_table(
            ["arm", *[f"own domain, round {r + 1}" for r in range(width)], "gold positives"],
            [
                [
                    arm,
                    *[("" if v is None else f"{100 * v:.0f}%") for v in values],
                    f"{100 * arms[arm]['gold_fallback_share']:.0f}%",
                ]
                for arm, values in shares.items()
            ],
        )
    llm_rows = [
        [
            arm,
            " / ".join(f"{100 * v:.1f}" for v in row["llm_accuracy_start"]),
            " / ".join(f"{100 * v:.1f}" for v in row["llm_accuracy_final"]),
        ]
        for arm, row in arms.items()
        if None not in row["llm_accuracy_start"] + row["llm_accuracy_final"]
    ]
    if llm_rows:
        text += "\n" + markdown_table(
            ["arm", "LLM acc. at round 0 (%, per seed)", "LLM acc. at the end (%, per seed)"],
            llm_rows,
        )
    text += _llm_direction_table(analysis.get("llm_direction"))
    headroom = analysis.get("headroom")
    if headroom is not None:
        verdict = "valid" if analysis["valid_setting"] else "TOO SMALL TO DECIDE"
        text += f"Headroom (oracle - random): {100 * headroom:+.1f} points: {verdict}\n"
    console.print(text)
    return text


def _llm_direction_table(direction: dict[str, Any] | None) -> str:
    """The SLM -> LLM direction as Markdown: LLM before/after per arm and group, then contrasts."""
    if not direction:
        return ""
    names = {
        "client_only": "levels only a client holds ("
        + ", ".join(direction["client_only_domains"])
        + ")",
        "taught": "levels the teacher was taught",
    }
    rows, contrasts = [], []
    for group, block in direction["groups"].items():
        for arm, row in block["arms"].items():
            gain = row["gain"]
            rows.append(
                [
                    names[group],
                    arm,
                    ", ".join(map(str, row["seeds"])),
                    str(row["n_items_per_run"]),
                    "" if row["constant_answer"] is None else f"{100 * row['constant_answer']:.1f}",
                    f"{100 * row['start']:.1f}",
                    f"{100 * row['final']:.1f}",
                    " / ".join(f"{100 * v:.1f}" for v in row["final_per_seed"]),
                    f"{100 * gain['diff']:+.1f} [{100 * gain['ci_low']:+.1f}, "
                    f"{100 * gain['ci_high']:+.1f}]",
                ]
            )
        for label, c in block["final_contrasts"].items():
            contrasts.append(
                [
                    names[group],
                    label,
                    ", ".join(map(str, c["seeds"])),
                    f"{100 * c['diff']:+.1f}",
                    f"[{100 * c['ci_low']:+.1f}, {100 * c['ci_high']:+.1f}]",
                ]
            )
    text = "\n" + markdown_table(
        [
            "LLM scored on",
            "arm",
            "seeds",
            "items / run",
            "commonest answer (%)",
            "LLM before (%)",
            "LLM after (%)",
            "after, per seed",
            "after - before (paired, 95% CI)",
        ],
        rows,
    )
    if contrasts:
        text += "\n" + markdown_table(
            ["LLM scored on", "LLM after, paired", "seeds", "difference (points)", "95% CI"],
            contrasts,
        )
    shares = {
        arm: row["server_client_only_share_by_round"]
        for arm, row in direction["groups"].get("client_only", {}).get("arms", {}).items()
        if any(v is not None for v in row["server_client_only_share_by_round"])
    }
    if shares:
        width = max(len(v) for v in shares.values())
        text += "\n" + markdown_table(
            ["arm", *[f"LLM's selections from {names['client_only']}, round {r + 1}"
                      for r in range(width)]],
            [
                [arm, *[("" if v is None else f"{100 * v:.0f}%") for v in values]]
                for arm, values in shares.items()
            ],
        )  # fmt: skip
    return text


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for arm, row in result["analysis"]["arms"].items():
        mean = [100 * v for v in row["round_mean"]]
        band = [100 * v for v in row["round_ci95"]]
        xs = list(range(len(mean)))
        ax.plot(xs, mean, marker="o", label=arm)
        ax.fill_between(
            xs, [m - b for m, b in zip(mean, band)], [m + b for m, b in zip(mean, band)], alpha=0.15
        )
    ax.set_xlabel("round")
    ax.set_ylabel("mean SLM accuracy (%)")
    host = result.get("host", "fedcot")
    ax.set_title(f"{host} arms at equal optimizer steps (mean over seeds, 95% CI)")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def host_arms(args: argparse.Namespace) -> list[str]:
    """HOST_ARMS less the gate variant when the host has no `correctness_gate` option."""
    base = load_config(args.config, list(HOSTS[args.host]))
    gate = "correctness_gate" in type(base.host).model_fields
    return [a for a in HOST_ARMS if a != "host_gate" or gate]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument(
        "--host",
        default="fedcot",
        choices=list(HOSTS),
        help="Host to run the setting on (default FedCoT, the full table; the others run "
        "host, host + LaDa and host + gate where the host has a gate).",
    )
    parser.add_argument("--arms", nargs="+", default=None, choices=list(ARMS))
    parser.add_argument("--jobs", type=int, default=2, help="Arms run at once (processes).")
    parser.add_argument("--tag", default="", help="Suffix of the result files (e.g. dev).")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="Run nothing: report the (arm, seed) runs already finished in the cache (an "
        "interrupted table; each arm over its own seeds, each contrast over the seeds both "
        "arms finished).",
    )
    parser.add_argument(
        "--upstream",
        action="store_true",
        help="Add a fourth client holding the level the teacher was never taught (gcd 1) and "
        "score the LLM on it item by item before and after: the SLM -> LLM direction (not with "
        "FedCoT, which never trains the LLM).",
    )


def main() -> None:
    parser = base_parser(__doc__ or "")
    add_arguments(parser)
    args = parser.parse_args()
    args.seeds = args.seeds or ([0] if args.quick else list(REPORT_SEEDS))
    if args.upstream and args.host == "fedcot":
        parser.error("--upstream needs a host that trains the LLM (fedcollm, fedmkt, crosslm)")
    if args.host != "fedcot":
        args.tag = args.tag or (args.host + ("_upstream" if args.upstream else ""))
    if args.arms is None:
        args.arms = list(ARMS) if args.host == "fedcot" else host_arms(args)
    if args.cache_dir is None:
        args.cache_dir = RESULTS / "proof_runs" / (args.tag or ("quick" if args.quick else "main"))
    started = time.perf_counter()
    setup_environment(args.threads)
    console = make_console()
    results = read_finished(args) if args.report_only else run_all(args, console)
    arms = [a for a in ARMS if a in args.arms or (a == "lada" and set(args.arms) & set(MATCHED))]
    result = {
        "config": str(Path(args.config).resolve().relative_to(ROOT)),
        "host": args.host,
        "upstream": args.upstream,
        "overrides": _overrides(args),
        "seeds": args.seeds,
        "analysis": analyse(results, arms, args.seeds),
    }
    name = "proof" + (f"_{args.tag}" if args.tag else "") + ("_quick" if args.quick else "")
    table = report(result, console)
    result["table_markdown"] = table
    out = args.out or RESULTS / f"{name}.json"
    (out.with_suffix(".md")).write_text(table)
    plot(result, ROOT / "docs" / "results" / f"{name}.png")
    console.print(f"wrote {write_result(name, result, out, started)}")


if __name__ == "__main__":
    main()
