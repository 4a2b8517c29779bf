"""Runs one experiment end to end and writes its run folder.

Run folder layout:
  config.toml / config.json  the resolved config (TOML for reading, JSON exact)
  metrics.jsonl              one record per round (round 0 = after warm-up, before federation),
                             with the round's training budget spent per party (`budget_record`)
  selections.jsonl           per round and filter: the public items chosen, with scores
  summary.json               final and best accuracies, totals of bytes and time, and what
                             text normalisation changed in the items (data.normalize_text)
  checkpoints/round-N.pt     the newest complete rounds, for `lada run --resume RUN_DIR`
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.table import Table

from lada.experiments.checkpoint import CheckpointError, load_latest, restore_rng, save_checkpoint
from lada.experiments.config import ConfigError, ExperimentConfig, dump_config
from lada.experiments.setup import Federation, build_federation
from lada.experiments.tracking import Trackers, open_trackers, require_backends
from lada.federation.inprocess import InProcessRuntime
from lada.federation.sampling import participants
from lada.federation.traffic import PayloadAudit, PrivateTexts, Traffic
from lada.hosts.base import EVALUATE, SETUP, Host, ServerParty
from lada.hosts.payloads import EvalReport
from lada.models.training import evaluate
from lada.tasks.item import ReasoningItem


@dataclass
class RunResult:
    run_dir: Path
    summary: dict[str, Any]
    audit: PayloadAudit | None = None
    federation: Federation | None = None


def new_run_dir(config: ExperimentConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(config.output_dir) / f"{config.name}-{config.host.name}-seed{config.seed}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def _write_atomic(path: Path, text: str) -> None:
    """Write a whole file so that a crash leaves either the old or the new content."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")


def private_texts(federation: Federation) -> PrivateTexts:
    """What must never cross a boundary: the question, rationale, gold path and id of every
    client's private train and test items, set against the server's public pool (for
    `PayloadAudit.leaks`)."""
    private = [it for client in federation.clients for it in (*client.train, *client.test)]
    return PrivateTexts.from_items(private, federation.server.public_pool)


def _selection_records(
    round_idx: int, party: str, selections: list[dict[str, Any]], public_pool: list[ReasoningItem]
) -> list[dict[str, Any]]:
    by_id = {it.id: it for it in public_pool}
    out = []
    for sel in selections:
        record = {"round": round_idx, "party": party, **sel}
        ids = sel.get("item_ids", [])
        record["domains"] = [by_id[i].domain if i in by_id else "?" for i in ids]
        record["difficulties"] = [by_id[i].difficulty if i in by_id else 0 for i in ids]
        out.append(record)
    return out


def budget_record(
    llm_name: str, server_log: dict[str, Any], client_logs: dict[int, dict[str, Any]]
) -> dict[str, dict[str, int]]:
    """Optimizer steps and tokens forwarded with a gradient that each party spent this round
    learning from the other party on public items (private SFT excluded: `log["private"]`).

    Keys: "server" (its LLM), "client_<k>" (its SLM), and "server/<model>" for any other model
    trained on the server (FedCoLLM's aggregated SLM, which learns there for every client).
    """
    out: dict[str, dict[str, int]] = {"server": {"steps": 0, "tokens": 0}}
    for model, spent in server_log.get("budget", {}).items():
        key = "server" if model == llm_name else f"server/{model}"
        out[key] = {"steps": int(spent["steps"]), "tokens": int(spent["tokens"])}
    for cid, log in sorted(client_logs.items()):
        spent = log.get("budget", {}).values()
        out[f"client_{cid}"] = {
            "steps": sum(int(u["steps"]) for u in spent),
            "tokens": sum(int(u["tokens"]) for u in spent),
        }
    return out


def budget_totals(history: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """The run's budget records summed: the LLM ("server") and every SLM-side party ("slm")."""
    totals = {"slm": {"steps": 0, "tokens": 0}, "llm": {"steps": 0, "tokens": 0}}
    for record in history:
        for party, spent in record.get("budget", {}).items():
            side = totals["llm" if party == "server" else "slm"]
            side["steps"] += spent["steps"]
            side["tokens"] += spent["tokens"]
    return totals


class Runtime(Protocol):
    """Carries one exchange of a host between the server and the clients."""

    def run_exchange(
        self,
        exchange: str,
        round_idx: int,
        traffic: Traffic,
        participants: Sequence[int] | None = None,
    ) -> None:
        """`participants`: the clients taking part (None: every client still in the run)."""

    def progress(self) -> Any:
        """What the runtime itself needs to continue after a resume (checkpointed with the
        parties; None when it needs nothing)."""

    def resume(self, host: Host, server: ServerParty, progress: Any, round_idx: int) -> None:
        """Continue after round `round_idx` with the parties and `progress` checkpointed then."""


@dataclass
class ServerSide:
    """What the server-side loop drives when the clients live elsewhere (Flower)."""

    host: Host
    server: ServerParty
    runtime: Runtime
    #: Items the experimenter scores the LLM on (the union of the clients' test splits).
    llm_eval_items: list[ReasoningItem]


def config_differences(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the fields where two config dumps differ."""
    out = []
    for key in sorted(set(a) | set(b)):
        name = f"{prefix}{key}"
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_differences(va, vb, f"{name}.")
        elif va != vb:
            out.append(name)
    return out


#: Config fields a resume may change: where the run is written, what carries and polls it, how
#: many simulated clients run at once, what logs it. None of them changes a result.
RESUME_MAY_CHANGE = (
    "output_dir",
    "runtime",
    "tracking",
    "federation.reply_poll_s",
    "federation.simulation_actors",
)


def check_same_config(run_dir: Path, config: ExperimentConfig) -> None:
    """A `ConfigError` naming the fields where `config` differs from the run folder's, apart
    from `RESUME_MAY_CHANGE`. The stored config is read with this version's defaults, so a
    field added since the run started counts as unchanged when it keeps its default."""
    stored = json.loads((run_dir / "config.json").read_text())
    try:
        stored = ExperimentConfig.model_validate(stored).model_dump(mode="json")
    except ValueError:
        pass  # a field renamed or removed since: compared as written, so it is named below
    changed = [
        f
        for f in config_differences(stored, config.model_dump(mode="json"))
        if not any(f == k or f.startswith(f"{k}.") for k in RESUME_MAY_CHANGE)
    ]
    if changed:
        raise ConfigError(
            f"{run_dir}: the config differs from the run's config.json in {changed}; "
            "resume with the same config"
        )


class Runner:
    """Owns one run: its parties, runtime, folder and per-round records.

    In-process (default) it builds every party; with `server_side` it drives a server whose
    clients are reached through another runtime (Flower). With `resume=True` and `run_dir` it
    continues the run in that folder from its last complete checkpoint.
    """

    def __init__(
        self,
        config: ExperimentConfig,
        *,
        run_dir: Path | None = None,
        console: Console | None = None,
        audit: bool = False,
        evaluate_llm: bool = True,
        resume: bool = False,
        server_side: ServerSide | None = None,
    ) -> None:
        require_backends(config.tracking.backends)  # a missing extra fails before any work
        self.config = config
        self.console = console or Console(stderr=True)
        self.audit = PayloadAudit() if audit else None
        self.evaluate_llm = evaluate_llm
        self.history: list[dict[str, Any]] = []
        self.federation: Federation | None = None
        self.next_round = 0
        self.trackers = Trackers.none()  # `run` opens the configured ones
        #: The round's `selections.jsonl` records, handed to the trackers with its metrics.
        self._round_selections: list[dict[str, Any]] = []
        if resume:
            if run_dir is None:
                raise ValueError("resume: give the run folder to resume")
            self.run_dir = run_dir
            self._resume(server_side)
            return
        self.run_dir = run_dir or new_run_dir(config)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if server_side is None:
            self._attach(build_federation(config, self.console))
        else:
            self._attach_server(server_side)
        (self.run_dir / "config.toml").write_text(dump_config(config))
        (self.run_dir / "config.json").write_text(config.model_dump_json(indent=2))
        (self.run_dir / "selections.jsonl").touch()  # empty when no filter selected anything

    # ------------------------------------------------------------------ parties
    def _attach(self, federation: Federation) -> None:
        self.federation = federation
        limit = int(self.config.federation.max_payload_mb * 1e6)
        runtime = InProcessRuntime(
            federation.host, federation.server, federation.clients, self.audit, limit
        )
        cap = self.config.evaluation.llm_max_items_per_client
        union = [it for c in federation.clients for it in c.test[:cap]]
        self._attach_server(ServerSide(federation.host, federation.server, runtime, union))

    def _attach_server(self, side: ServerSide) -> None:
        self.host, self.server, self.runtime = side.host, side.server, side.runtime
        self.llm_eval_items = side.llm_eval_items
        self.side = side

    def _state(self) -> dict[str, Any]:
        if self.federation is not None:
            return {"federation": self.federation}
        return {"host": self.host, "server": self.server, "runtime": self.runtime.progress()}

    def _resume(self, side: ServerSide | None) -> None:
        check_same_config(self.run_dir, self.config)
        checkpoint = load_latest(self.run_dir, warn=lambda m: self.console.print(f"[yellow]{m}"))
        flower = "federation" not in checkpoint.state  # only the server side was checkpointed
        if flower != (side is not None):
            written, asked = ("Flower", "in-process") if flower else ("in-process", "Flower")
            raise CheckpointError(
                f"{checkpoint.path}: written by the {written} runtime, resumed on the {asked} "
                f'runtime; resume with runtime = "{"flower-sim" if flower else "inprocess"}"'
            )
        if side is None:
            self._attach(checkpoint.state["federation"])
        else:
            side.host, side.server = checkpoint.state["host"], checkpoint.state["server"]
            side.runtime.resume(
                side.host, side.server, checkpoint.state.get("runtime"), checkpoint.round_idx
            )
            self._attach_server(side)
        restore_rng(checkpoint.rng)
        self.history = list(checkpoint.history)
        self.next_round = checkpoint.round_idx + 1
        self._rewrite_records(checkpoint.round_idx)
        self.console.print(
            f"resuming {self.run_dir} after round {checkpoint.round_idx} ({checkpoint.path.name})"
        )

    def _rewrite_records(self, last_round: int) -> None:
        """Drop records written after the checkpoint (a crash between metrics and checkpoint)."""
        lines = [json.dumps(r, sort_keys=True) for r in self.history]
        _write_atomic(self.run_dir / "metrics.jsonl", "".join(x + "\n" for x in lines))
        path = self.run_dir / "selections.jsonl"
        kept = [
            x
            for x in (path.read_text().splitlines() if path.exists() else [])
            if x.strip() and json.loads(x)["round"] <= last_round
        ]
        _write_atomic(path, "".join(x + "\n" for x in kept))

    # ----------------------------------------------------------------- rounds
    def _evaluate_round(
        self, round_idx: int, traffic: Traffic, started: float, taking_part: list[int]
    ) -> dict[str, Any]:
        server = self.server
        scored = taking_part if self.config.evaluation.clients == "participants" else None
        self.runtime.run_exchange(EVALUATE, round_idx, traffic, scored)
        reports: dict[int, EvalReport] = server.eval_reports
        server.eval_reports = {}
        self._round_selections = []
        record: dict[str, Any] = {"round": round_idx, "participants": taking_part, "clients": {}}
        for cid, report in sorted(reports.items()):
            record["clients"][str(cid)] = {
                "accuracy": report.accuracy,
                "n": report.n,
                "per_domain": report.per_domain,
                "log": report.log,
            }
            self._write_selections(round_idx, f"client_{cid}", report.selections)
        accs = [r.accuracy for r in reports.values()]
        record["mean_slm_accuracy"] = sum(accs) / len(accs) if accs else 0.0
        if self._scores_llm(round_idx):
            # A measurement by the experimenter, not a federation step: the LLM is scored on
            # the union of the clients' test splits (no party sees another's items).
            with server.log.phase("evaluation"):
                llm_eval = evaluate(
                    server.model,
                    self.llm_eval_items,
                    batch_size=self.config.train.generation_batch_size,
                    max_new_tokens=self.config.train.max_new_tokens,
                )
            record["llm"] = {"accuracy": llm_eval.accuracy, "per_domain": llm_eval.per_domain}
        record["server_log"] = server.log.to_dict()
        record["budget"] = budget_record(
            server.model.name,
            record["server_log"],
            {cid: report.log for cid, report in reports.items()},
        )
        self._write_selections(round_idx, "server", server.log.selections)
        server.new_round()
        record["traffic"] = traffic.to_dict()
        record["wall_seconds"] = time.perf_counter() - started
        return record

    def _write_selections(
        self, round_idx: int, party: str, selections: list[dict[str, Any]]
    ) -> None:
        """Append a party's selections of this round to `selections.jsonl` and keep them for
        the trackers."""
        for rec in _selection_records(round_idx, party, selections, self.server.public_pool):
            _append_jsonl(self.run_dir / "selections.jsonl", rec)
            self._round_selections.append(rec)

    def _scores_llm(self, round_idx: int) -> bool:
        when = self.config.evaluation.llm_rounds
        if not self.evaluate_llm or when == "none" or not self.llm_eval_items:
            return False
        return when == "all" or round_idx in (0, self.config.rounds)

    def run(self) -> RunResult:
        rounds = self.config.rounds
        n_clients = self.config.data.split.n_clients
        self.console.print(
            f"[bold]{self.config.name}[/]: host {self.host.name}"
            f"{' + LaDa' if self.config.lada_enabled else ' alone'}, {n_clients} clients, "
            f"{rounds} rounds -> {self.run_dir}"
        )
        self.trackers = open_trackers(self.config, self.run_dir, self.history)
        for round_idx in range(self.next_round, rounds + 1):
            started = time.perf_counter()
            traffic = Traffic()
            exchanges = (SETUP,) if round_idx == 0 else self.host.exchanges
            taking_part = participants(
                range(n_clients),
                self.config.federation.clients_per_round,
                self.config.seed,
                round_idx,
            )
            for exchange in exchanges:
                self.runtime.run_exchange(exchange, round_idx, traffic, taking_part)
            self._record(self._evaluate_round(round_idx, traffic, started, taking_part))
            if self.config.checkpoint.enabled:
                save_checkpoint(
                    self.run_dir,
                    round_idx,
                    self.history,
                    self._state(),
                    keep=self.config.checkpoint.keep,
                )
        self.trackers.close()
        summary = self._summary()
        _write_atomic(self.run_dir / "summary.json", json.dumps(summary, indent=2, sort_keys=True))
        return RunResult(self.run_dir, summary, self.audit, self.federation)

    def _record(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        _append_jsonl(self.run_dir / "metrics.jsonl", record)
        self.trackers.log_round(record, self._round_selections)
        llm = record.get("llm", {}).get("accuracy")
        self.console.print(
            f"round {record['round']}: mean SLM accuracy {record['mean_slm_accuracy']:.1%}"
            + (f", LLM {llm:.1%}" if llm is not None else "")
            + f", {record['traffic']['total_bytes'] / 1e3:.1f} kB, {record['wall_seconds']:.0f} s"
        )

    def _summary(self) -> dict[str, Any]:
        first, last = self.history[0], self.history[-1]
        summary: dict[str, Any] = {
            "name": self.config.name,
            "host": self.host.name,
            "lada": self.config.lada_enabled,
            "seed": self.config.seed,
            "rounds": self.config.rounds,
            "final": {
                "mean_slm_accuracy": last["mean_slm_accuracy"],
                "slm_accuracy": {k: v["accuracy"] for k, v in last["clients"].items()},
                "llm_accuracy": last.get("llm", {}).get("accuracy"),
            },
            "start": {
                "mean_slm_accuracy": first["mean_slm_accuracy"],
                "slm_accuracy": {k: v["accuracy"] for k, v in first["clients"].items()},
                "llm_accuracy": first.get("llm", {}).get("accuracy"),
            },
            "total_bytes": sum(r["traffic"]["total_bytes"] for r in self.history),
            "budget": budget_totals(self.history),
            "wall_seconds": sum(r["wall_seconds"] for r in self.history),
        }
        if self.federation is not None and self.federation.normalization is not None:
            summary["text_normalization"] = self.federation.normalization
        return summary


def client_table(summary: dict[str, Any]) -> Table:
    """Per-client accuracy before and after the federation, plus the LLM."""
    table = Table(title=f"{summary['host']}{' + LaDa' if summary['lada'] else ''}: test accuracy")
    table.add_column("model")
    table.add_column("round 0", justify="right")
    table.add_column(f"round {summary['rounds']}", justify="right")
    for cid, acc in summary["final"]["slm_accuracy"].items():
        table.add_row(
            f"SLM client {cid}", f"{summary['start']['slm_accuracy'][cid]:.1%}", f"{acc:.1%}"
        )
    table.add_row(
        "[bold]SLM mean[/]",
        f"{summary['start']['mean_slm_accuracy']:.1%}",
        f"[bold]{summary['final']['mean_slm_accuracy']:.1%}[/]",
    )
    if summary["final"]["llm_accuracy"] is not None:
        table.add_row(
            "LLM (union of tests)",
            f"{summary['start']['llm_accuracy']:.1%}",
            f"{summary['final']['llm_accuracy']:.1%}",
        )
    return table
