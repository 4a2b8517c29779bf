"""What every benchmark shares: scales, the run cache, token accounting, machine info, output.

Benchmarks reuse the experiment API (`run_experiment`, `compare.variant_config`); they never
re-implement a round. One benchmark session shares a run cache keyed by the resolved config, so
`run_all.py` runs each (host, variant, seed) once and the efficacy, overhead, communication and
filter-quality benchmarks all read the same run folders.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would drown the tables

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from lada.apps.run import run_experiment  # noqa: E402
from lada.experiments.compare import variant_config  # noqa: E402
from lada.experiments.config import ExperimentConfig, load_config  # noqa: E402
from lada.tasks.prompts import gold_path, render_prompt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CONFIGS = ROOT / "configs"
HOSTS = ("fedcot", "fedcollm", "fedmkt", "crosslm")

#: Overrides that turn a shipped host config into each benchmark scale.
#: quick: minutes for the whole suite on 2 CPU cores (smoke scale: numbers say little);
#: full: the quickstart's scale (configs/quickstart.toml) for every host, 3 seeds, with the
#: shipped teacher (each config's own llm.pretrain, one cache entry for all of them).
SCALES: dict[str, list[str]] = {
    "quick": [
        "rounds=2",
        "seeds=[0]",
        "data.split.n_public=24",
        "data.split.n_clients=2",
        'data.split.client_domains=[["chain_sum", "products"], ["leg_counting", "lcm"]]',
        "data.split.n_train=16",
        "data.split.n_test=8",
        "llm.preset=tiny-2m",
        "llm.pretrain.items_per_domain=40",
        "llm.pretrain.epochs=2",
        "train.batch_size=8",
        "train.max_new_tokens=32",
        "train.warmup_local_epochs=3",
        "train.generation_batch_size=32",
        "evaluation.llm_rounds=first_last",
        "evaluation.llm_max_items_per_client=6",
        "lada.hidden_size=32",
        "lada.n_clusters=4",
        "lada.kmeans_n_init=2",
        "lada.epochs_per_round=5",
        "lada.negative_max_new_tokens=32",
    ],
    "full": [
        "rounds=3",
        "seeds=[0, 1, 2]",
        "data.split.n_public=120",
        "data.split.n_train=120",
        "data.split.n_test=30",
        "train.local_epochs=2",
        "train.warmup_local_epochs=8",
        "evaluation.llm_rounds=first_last",
        "evaluation.llm_max_items_per_client=20",
    ],
}
#: Host-specific additions per scale (CrossLM writes as many items as the public pool holds).
HOST_SCALES: dict[tuple[str, str], list[str]] = {
    ("crosslm", "quick"): ["host.generate_per_round=24"],
    ("fedmkt", "quick"): [
        'slms=[{preset = "tiny-1m", learning_rate = 1e-3}, '
        '{preset = "tiny-gpt2-2m", learning_rate = 8e-4}]'
    ],
    ("crosslm", "full"): ["host.generate_per_round=120"],
}


# --------------------------------------------------------------------------------- environment
def setup_environment(threads: int = 1) -> None:
    """One torch thread by default: the benchmark machine is shared, and timings stay stable.

    Training progress bars are switched off: they would bury the tables."""
    if threads > 0:
        torch.set_num_threads(threads)
    from lada.models import training

    if not getattr(training.tqdm, "_quiet", False):
        bar = training.tqdm

        def quiet(*args: Any, **kwargs: Any) -> Any:
            kwargs["disable"] = True
            return bar(*args, **kwargs)

        quiet._quiet = True  # type: ignore[attr-defined]
        training.tqdm = quiet


def make_console() -> Console:
    """A console wide enough for the tables even when output goes to a file."""
    return Console(width=max(140, Console().width))


def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory and software versions of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        memory_gb = psutil.virtual_memory().total / 2**30
    except ImportError:
        memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(memory_gb, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def git_commit() -> dict[str, Any]:
    """The commit the benchmark ran on, and whether the working tree had changes."""

    def git(*args: str) -> str:
        try:
            out = subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
            )
            return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain"))}


def base_parser(doc: str) -> argparse.ArgumentParser:
    """Arguments every benchmark takes."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke scale (minutes)")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds (default: the scale's)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0 = default)")
    parser.add_argument(
        "--cache-dir", type=Path, help="run cache shared with other benchmarks of a session"
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], help="extra KEY=VALUE override"
    )
    parser.add_argument("--out", type=Path, help="JSON output path")
    return parser


def scale_name(args: argparse.Namespace) -> str:
    return "quick" if args.quick else "full"


def host_config(
    host: str, scale: str, overrides: Sequence[str] = (), *, path: Path | None = None
) -> ExperimentConfig:
    """A shipped host config at a benchmark scale, plus extra overrides."""
    config_path = path or CONFIGS / f"{host}.toml"
    sets = [*SCALES[scale], *HOST_SCALES.get((host, scale), []), *overrides]
    return load_config(config_path, sets)


def constant_answer_accuracy(
    train: Iterable[Any], test: Iterable[Any], key: Callable[[Any], str]
) -> dict[str, float]:
    """Per `key` group of the test items, the accuracy of always giving the group's most common
    training answer (0 for a group training never saw): what a model that ignores the question
    scores, e.g. mostly 1 for gcd."""
    answers: dict[str, Counter[str]] = defaultdict(Counter)
    for item in train:
        answers[key(item)][item.answer] += 1
    hits: dict[str, list[bool]] = defaultdict(list)
    for item in test:
        common = answers[key(item)].most_common(1)
        hits[key(item)].append(bool(common) and common[0][0] == item.answer)
    return {group: sum(v) / len(v) for group, v in hits.items()}


def default_cache_dir() -> Path:
    return ROOT / "runs" / "benchmarks" / time.strftime("%Y%m%d-%H%M%S")


# ------------------------------------------------------------------------------------ output
def write_result(name: str, payload: dict[str, Any], out: Path | None, started: float) -> Path:
    """Write a benchmark's JSON with the command, date, machine and commit it came from."""
    record = {
        "benchmark": name,
        "command": " ".join(["python", *map(_portable, sys.argv)]),
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "wall_seconds": time.perf_counter() - started,
        "machine": machine_info(),
        "git": git_commit(),
        **payload,
    }
    path = out or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, indent=2, default=_jsonable)
    # Paths inside the repository are written relative to it: results do not name this machine.
    path.write_text(text.replace(json.dumps(str(ROOT) + "/")[1:-1], "") + "\n")
    return path


def _portable(arg: str) -> str:
    """An argument as a result file may record it: an absolute path outside the repository (a
    cache folder, say) becomes `<name>`, so results do not name this machine's folders."""
    path = Path(arg)
    if path.is_absolute() and not path.resolve().is_relative_to(ROOT):
        return f"<{path.name}>"
    return arg


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class MarkdownSink:
    """Stands in for a console in a benchmark's `report`: collects its tables as Markdown."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def table(self, title: str, columns: Sequence[str], rows: list[list[Any]]) -> None:
        self.parts.append(f"**{title}**\n\n" + markdown_table(columns, rows))

    def print(self, text: Any = "") -> None:
        self.parts.append(str(text) + "\n")

    def text(self) -> str:
        return "\n".join(self.parts)


def print_table(
    console: Console | MarkdownSink,
    title: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
) -> None:
    rows = [[str(cell) for cell in row] for row in rows]
    if isinstance(console, MarkdownSink):
        console.table(title, columns, rows)
        return
    table = Table(title=title)
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def pct(pair: tuple[float, float]) -> str:
    """A (mean, sd) fraction as '12.3 ± 4.5' percent."""
    if pair[0] != pair[0]:  # NaN
        return "n/a"
    return f"{100 * pair[0]:.1f} ± {100 * pair[1]:.1f}"


# ------------------------------------------------------------------------------- run records
@dataclass
class RunRecord:
    """One finished run, read back from its folder, plus the benchmark's own measurements."""

    key: str
    variant: str
    seed: int
    run_dir: Path
    summary: dict[str, Any]
    rounds: list[dict[str, Any]]
    selections: list[dict[str, Any]]
    extras: dict[str, Any] = field(default_factory=dict)

    # Token accounting. Every host counts the tokens each model forwards with a gradient per
    # round (prompts and paths, LaDa's negatives included): `RoundLog.trained_tokens` holds all
    # of them, each round's `budget` record the public part (learning from the other party),
    # private SFT being the same for every variant. SLM tokens include SLM copies trained on the
    # server (FedCoLLM distils into the aggregated SLM there): every server-side model that is
    # not the LLM.
    def slm_tokens(self) -> int:
        llm = self.extras.get("llm_name", "llm")
        clients = sum(
            sum(c["log"]["trained_tokens"].values())
            for r in self.federated_rounds()
            for c in r["clients"].values()
        )
        server = sum(
            n
            for r in self.rounds
            for name, n in r["server_log"]["trained_tokens"].items()
            if name != llm
        )
        return clients + server

    def slm_public_tokens(self) -> int:
        return sum(
            spent["tokens"]
            for r in self.federated_rounds()
            for party, spent in r["budget"].items()
            if party != "server"
        )

    def llm_tokens(self) -> int:
        llm = self.extras.get("llm_name", "llm")
        return sum(r["server_log"]["trained_tokens"].get(llm, 0) for r in self.rounds)

    def server_tokens(self) -> int:
        return sum(sum(r["server_log"]["trained_tokens"].values()) for r in self.rounds)

    def final_slm(self) -> float:
        return self.summary["final"]["mean_slm_accuracy"]

    def final_llm(self) -> float | None:
        return self.summary["final"]["llm_accuracy"]

    def client_accuracy(self) -> dict[str, float]:
        return self.summary["final"]["slm_accuracy"]

    def federated_rounds(self) -> list[dict[str, Any]]:
        return [r for r in self.rounds if r["round"] >= 1]


def config_key(config: ExperimentConfig) -> str:
    """Content key of a run: everything in the config except where it is written."""
    data = config.model_dump(mode="json")
    data.pop("output_dir", None)
    data.pop("name", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _measure(result: Any, config: ExperimentConfig) -> dict[str, Any]:
    """What the benchmarks need beyond the run folder, taken from the live parties."""
    federation = result.federation
    extras: dict[str, Any] = {"maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3}
    if federation is None:
        return extras
    private = 0
    nll: dict[str, dict[str, float]] = {}
    for client in federation.clients:
        paths = [gold_path(it) for it in client.train]
        private += (sum(client.model.count_tokens(paths)) + len(paths)) * config.train.local_epochs
        test = client.test
        if test:
            # Per-token NLL of the gold path on the client's own test items, by domain: a
            # measure of learning that moves even when greedy answers are still all wrong.
            per_item = -client.model.sequence_logprobs(
                [render_prompt(it) for it in test],
                [gold_path(it) for it in test],
                batch_size=config.train.generation_batch_size,
                normalize=True,
            )
            by_domain: dict[str, list[float]] = {}
            for item, value in zip(test, per_item.tolist()):
                by_domain.setdefault(item.domain, []).append(value)
            nll[str(client.client_id)] = {d: statistics.fmean(v) for d, v in by_domain.items()}
    extras["private_tokens_per_round"] = private
    extras["test_nll"] = nll
    extras["llm_name"] = federation.server.model.name
    extras["client_domains"] = {
        str(c.client_id): sorted({it.domain for it in c.train}) for c in federation.clients
    }
    return extras


class RunCache:
    """Runs configs once per session; a second request for the same config reads the folder."""

    def __init__(self, root: Path | None, console: Console) -> None:
        self.root = root or default_cache_dir()
        self.console = console

    def run(
        self,
        base: ExperimentConfig,
        variant: str,
        seed: int,
        extra: dict[str, Any] | None = None,
        *,
        evaluate_llm: bool = True,
    ) -> RunRecord:
        config = variant_config(base, variant, seed, self.root, extra=extra)
        key = config_key(config)
        folder = self.root / key
        config = config.model_copy(update={"output_dir": str(folder)})
        marker = folder / "bench.json"
        if marker.exists():
            saved = json.loads(marker.read_text())
            return self.load_record(key, variant, seed, Path(saved["run_dir"]), saved["extras"])
        label = ", ".join(f"{k}={v}" for k, v in (extra or {}).items())
        self.console.print(
            f"[dim]run {config.host.name} {variant}{f' ({label})' if label else ''} seed {seed}[/]"
        )
        result = run_experiment(config, console=Console(stderr=True, quiet=True))
        extras = _measure(result, config)
        marker.write_text(json.dumps({"run_dir": str(result.run_dir), "extras": extras}))
        return self.load_record(key, variant, seed, result.run_dir, extras)

    @staticmethod
    def load_record(
        key: str, variant: str, seed: int, run_dir: Path, extras: dict[str, Any]
    ) -> RunRecord:
        """A finished run folder as a `RunRecord` (any run, not only this cache's)."""
        return RunRecord(
            key=key,
            variant=variant,
            seed=seed,
            run_dir=run_dir,
            summary=json.loads((run_dir / "summary.json").read_text()),
            rounds=_read_jsonl(run_dir / "metrics.jsonl"),
            selections=_read_jsonl(run_dir / "selections.jsonl"),
            extras=extras,
        )


# ---------------------------------------------------------------------- equal token budget
@dataclass
class BudgetMatch:
    """Host alone, host + LaDa as configured, and host + LaDa at the host's token budget."""

    host: RunRecord
    lada: RunRecord
    lada_equal: RunRecord
    #: Multiplier of `budget.client_steps` that put LaDa on the host's public SLM tokens.
    epochs_factor: int


def equal_budget(cache: RunCache, base: ExperimentConfig, seed: int) -> BudgetMatch:
    """Match LaDa's trained tokens to the host's by giving LaDa more optimizer steps.

    Host and LaDa take the same `budget.client_steps`, but their steps need not forward the
    same tokens (LaDa's carry negatives; the host's may carry a second task). The token budget
    is held equal by giving the LaDa variant `factor` times the client steps, factor =
    round(host public SLM tokens / LaDa public SLM tokens) measured on the same seed (private
    SFT is identical and excluded). Tokens are the runs' `budget` records; the ratio actually
    reached is reported next to every result, since a whole factor only approximates it.
    """
    host = cache.run(base, "host", seed)
    lada = cache.run(base, "lada", seed)
    lada_public = lada.slm_public_tokens()
    factor = max(1, round(host.slm_public_tokens() / lada_public)) if lada_public > 0 else 1
    if factor == 1:
        return BudgetMatch(host, lada, lada, 1)
    extra = budget_overrides(base, factor)
    return BudgetMatch(host, lada, cache.run(base, "lada", seed, extra), factor)


def budget_overrides(base: ExperimentConfig, factor: int) -> dict[str, Any]:
    """Overrides that put a LaDa variant on the equal-token budget found by `equal_budget`."""
    return {"budget.client_steps": base.budget.client_steps * factor} if factor > 1 else {}


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table (first column left-aligned, the rest right-aligned)."""
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join(["---", *["---:"] * (len(columns) - 1)]) + "|",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_benchmark(
    name: str,
    args: argparse.Namespace,
    cache: RunCache | None,
    run: Any,
    report: Any,
) -> dict[str, Any]:
    """The shared body of a benchmark's `run_cli`: environment, run cache, table, JSON.

    `run(cache)` computes the result (the module binds its own arguments), `report(result,
    console)` prints it, and the JSON goes to `args.out` (or `benchmarks/results/<name>.json`).
    """
    started = time.perf_counter()
    setup_environment(args.threads)
    console = make_console()
    cache = cache or RunCache(args.cache_dir, console)
    result = run(cache)
    report(result, console)
    console.print(f"wrote {write_result(name, result, args.out, started)}")
    return result


def cli_main(doc: str, add_arguments: Any, run_cli: Any) -> None:
    """A benchmark script's `main`: its parser (shared options + its own) and `run_cli`."""
    parser = base_parser(doc)
    add_arguments(parser)
    run_cli(parser.parse_args())
