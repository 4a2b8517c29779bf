"""Runs one experiment end to end and writes its run folder.

Run folder layout:
  config.toml / config.json  the resolved config (TOML for reading, JSON exact)
  metrics.jsonl              one record per round (round 0 = after warm-up, before federation)
  selections.jsonl           per round and filter: the public items chosen, with scores
  summary.json               final and best accuracies, totals of bytes and time
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from lada.experiments.config import ExperimentConfig, dump_config
from lada.experiments.setup import Federation, build_federation
from lada.federation.inprocess import InProcessRuntime, PayloadAudit, Traffic
from lada.hosts.base import EVALUATE, SETUP
from lada.hosts.payloads import EvalReport
from lada.models.training import evaluate


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


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")


def private_texts(federation: Federation) -> set[str]:
    """Every private question, rationale and item id (what must never cross a boundary)."""
    texts: set[str] = set()
    for client in federation.clients:
        for item in (*client.train, *client.test):
            texts.update((item.id, item.question, item.rationale))
    public = {it.question for it in federation.server.public_pool}
    return {t for t in texts if t and t not in public}


def _selection_records(
    round_idx: int, party: str, selections: list[dict[str, Any]], federation: Federation
) -> list[dict[str, Any]]:
    by_id = {it.id: it for it in federation.server.public_pool}
    out = []
    for sel in selections:
        record = {"round": round_idx, "party": party, **sel}
        ids = sel.get("item_ids", [])
        record["domains"] = [by_id[i].domain if i in by_id else "?" for i in ids]
        record["difficulties"] = [by_id[i].difficulty if i in by_id else 0 for i in ids]
        out.append(record)
    return out


class Runner:
    """Owns one run: its parties, runtime, folder and per-round records."""

    def __init__(
        self,
        config: ExperimentConfig,
        *,
        run_dir: Path | None = None,
        console: Console | None = None,
        audit: bool = False,
        evaluate_llm: bool = True,
    ) -> None:
        self.config = config
        self.console = console or Console(stderr=True)
        self.run_dir = run_dir or new_run_dir(config)
        self.audit = PayloadAudit() if audit else None
        self.evaluate_llm = evaluate_llm
        self.federation = build_federation(config, self.console)
        self.runtime = InProcessRuntime(
            self.federation.host, self.federation.server, self.federation.clients, self.audit
        )
        (self.run_dir / "config.toml").write_text(dump_config(config))
        (self.run_dir / "config.json").write_text(config.model_dump_json(indent=2))
        (self.run_dir / "selections.jsonl").touch()  # empty when no filter selected anything
        self.history: list[dict[str, Any]] = []

    # ----------------------------------------------------------------- rounds
    def _evaluate_round(self, round_idx: int, traffic: Traffic, started: float) -> dict[str, Any]:
        fed = self.federation
        self.runtime.run_exchange(EVALUATE, round_idx, traffic)
        reports: dict[int, EvalReport] = fed.server.memory.pop("reports")
        record: dict[str, Any] = {"round": round_idx, "clients": {}}
        for cid, report in sorted(reports.items()):
            record["clients"][str(cid)] = {
                "accuracy": report.accuracy,
                "n": report.n,
                "per_domain": report.per_domain,
                "log": report.log,
            }
            for rec in _selection_records(round_idx, f"client_{cid}", report.selections, fed):
                _append_jsonl(self.run_dir / "selections.jsonl", rec)
        accs = [r.accuracy for r in reports.values()]
        record["mean_slm_accuracy"] = sum(accs) / len(accs) if accs else 0.0
        if self._scores_llm(round_idx):
            # A measurement by the experimenter, not a federation step: the LLM is scored on
            # the union of the clients' test splits (no party sees another's items).
            cap = self.config.evaluation.llm_max_items_per_client
            union = [it for c in fed.clients for it in c.test[:cap]]
            with fed.server.log.phase("evaluation"):
                llm_eval = evaluate(
                    fed.server.model,
                    union,
                    batch_size=self.config.train.generation_batch_size,
                    max_new_tokens=self.config.train.max_new_tokens,
                )
            record["llm"] = {"accuracy": llm_eval.accuracy, "per_domain": llm_eval.per_domain}
        record["server_log"] = fed.server.log.to_dict()
        for rec in _selection_records(round_idx, "server", fed.server.log.selections, fed):
            _append_jsonl(self.run_dir / "selections.jsonl", rec)
        fed.server.new_round()
        record["traffic"] = traffic.to_dict()
        record["wall_seconds"] = time.perf_counter() - started
        return record

    def _scores_llm(self, round_idx: int) -> bool:
        when = self.config.evaluation.llm_rounds
        if not self.evaluate_llm or when == "none":
            return False
        return when == "all" or round_idx in (0, self.config.rounds)

    def run(self) -> RunResult:
        fed = self.federation
        rounds = self.config.rounds
        self.console.print(
            f"[bold]{self.config.name}[/]: host {fed.host.name}"
            f"{' + LaDa' if self.config.lada_enabled else ' alone'}, {len(fed.clients)} clients, "
            f"{rounds} rounds -> {self.run_dir}"
        )
        started = time.perf_counter()
        traffic = Traffic()
        self.runtime.run_exchange(SETUP, 0, traffic)
        self._record(self._evaluate_round(0, traffic, started))
        for round_idx in range(1, rounds + 1):
            started = time.perf_counter()
            traffic = self.runtime.run_round(round_idx)
            self._record(self._evaluate_round(round_idx, traffic, started))
        summary = self._summary()
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
        return RunResult(self.run_dir, summary, self.audit, fed)

    def _record(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        _append_jsonl(self.run_dir / "metrics.jsonl", record)
        llm = record.get("llm", {}).get("accuracy")
        self.console.print(
            f"round {record['round']}: mean SLM accuracy {record['mean_slm_accuracy']:.1%}"
            + (f", LLM {llm:.1%}" if llm is not None else "")
            + f", {record['traffic']['total_bytes'] / 1e3:.1f} kB, {record['wall_seconds']:.0f} s"
        )

    def _summary(self) -> dict[str, Any]:
        first, last = self.history[0], self.history[-1]
        return {
            "name": self.config.name,
            "host": self.federation.host.name,
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
            "wall_seconds": sum(r["wall_seconds"] for r in self.history),
        }


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


def run_experiment(config: ExperimentConfig, **kwargs: Any) -> RunResult:
    return Runner(config, **kwargs).run()
