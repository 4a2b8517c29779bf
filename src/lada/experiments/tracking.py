"""Experiment trackers: each round's record as named scalars in TensorBoard and/or MLflow.

Optional (`pip install 'lada[tracking]'`) and offline: nothing is logged unless
`tracking.backends` names a tracker, and both write files only, by default into the run folder:

  RUN_DIR/tensorboard/   TensorBoard event files (`tensorboard --logdir RUN_DIR/tensorboard`)
  RUN_DIR/mlflow.db      an MLflow SQLite store (`mlflow ui --backend-store-uri sqlite:///...`)
  RUN_DIR/tracking.json  the last round logged and the MLflow run id, so a resumed run goes on
                         in the same MLflow run and logs no round twice

The libraries are imported by the backends only, so `import lada` stays light.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from lada.experiments.config import ConfigError, ExperimentConfig, TrackingConfig

EXTRA_HINT = "pip install 'lada[tracking]'"
#: Modules each backend needs (MLflow's SQLite store runs on SQLAlchemy and Alembic).
REQUIRED_MODULES: dict[str, tuple[str, ...]] = {
    "tensorboard": ("tensorboard",),
    "mlflow": ("mlflow", "sqlalchemy", "alembic"),
}
STATE_FILE = "tracking.json"


def require_backends(backends: Sequence[str]) -> None:
    """Fail before any work when a requested tracker's libraries are not installed."""
    missing = [
        f"{backend} (no module {module!r})"
        for backend in backends
        for module in REQUIRED_MODULES[backend]
        if importlib.util.find_spec(module) is None
    ]
    if missing:
        raise ConfigError(
            f"tracking.backends: {', '.join(missing)}: the trackers are an optional extra; "
            f"install it with `{EXTRA_HINT}`"
        )


# ----------------------------------------------------------------------------- scalars
_UNSAFE = re.compile(r"[^\w.\- /]")


def _name(*parts: object) -> str:
    """One scalar name that MLflow accepts too: characters it refuses, and empty or dot-only
    segments (a name must not resolve to another as a path), become '_'."""
    text = _UNSAFE.sub("_", "/".join(str(p) for p in parts))
    return "/".join(s if s.strip(".") else "_" for s in text.split("/"))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _party_log(out: dict[str, float], party: str, log: dict[str, Any]) -> None:
    for loss, value in log.get("losses", {}).items():
        out[_name("loss", party, loss)] = value
    for counter, value in log.get("counters", {}).items():
        out[_name("counters", party, counter)] = value
    for phase, seconds in log.get("timings", {}).items():
        out[_name("time", party, phase)] = seconds
        out[_name("time", phase)] = out.get(_name("time", phase), 0.0) + seconds


def round_scalars(
    record: dict[str, Any], selections: Iterable[dict[str, Any]] = ()
) -> dict[str, float]:
    """A `metrics.jsonl` record (and the round's `selections.jsonl` records) as flat scalars.

    Names: `slm/accuracy/client_<k>` and `slm/accuracy/mean`, `slm/domain_accuracy/client_<k>/<d>`,
    `llm/accuracy`, `llm/domain_accuracy/<d>`, `loss/<party>/<loss>`, `counters/<party>/<name>`,
    `time/wall`, `time/<phase>` (summed over parties) and `time/<party>/<phase>`,
    `bytes/total` and `bytes/<exchange>/<direction>/<payload>`, `budget/<party>/steps|tokens`,
    `selections/<party>/<domain>` (items chosen from that domain). Non-numbers are left out.
    """
    out: dict[str, float] = {"slm/accuracy/mean": record["mean_slm_accuracy"]}
    for cid, client in record.get("clients", {}).items():
        party = f"client_{cid}"
        out[_name("slm/accuracy", party)] = client["accuracy"]
        for domain, acc in client.get("per_domain", {}).items():
            out[_name("slm/domain_accuracy", party, domain)] = acc
        _party_log(out, party, client.get("log", {}))
    if "llm" in record:
        out["llm/accuracy"] = record["llm"]["accuracy"]
        for domain, acc in record["llm"].get("per_domain", {}).items():
            out[_name("llm/domain_accuracy", domain)] = acc
    _party_log(out, "server", record.get("server_log", {}))
    if "wall_seconds" in record:
        out["time/wall"] = record["wall_seconds"]
    traffic = record.get("traffic", {})
    if "total_bytes" in traffic:
        out["bytes/total"] = traffic["total_bytes"]
    for key, size in traffic.get("bytes", {}).items():
        out[_name("bytes", key)] = size
    for party, spent in record.get("budget", {}).items():
        for unit, value in spent.items():
            out[_name("budget", party, unit)] = value
    chosen = Counter(
        (sel["party"], domain) for sel in selections for domain in sel.get("domains", [])
    )
    for (party, domain), count in sorted(chosen.items()):
        out[_name("selections", party, domain)] = count
    return {k: x for k, v in out.items() if (x := _number(v)) is not None}


def round_selections(run_dir: Path, round_idx: int) -> list[dict[str, Any]]:
    """The `selections.jsonl` records of one round."""
    path = run_dir / "selections.jsonl"
    if not path.exists():
        return []
    records = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return [r for r in records if r.get("round") == round_idx]


def flat_config(value: Any, prefix: str = "") -> dict[str, str]:
    """A config dump as dotted names -> text (MLflow params)."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, item in value.items():
            out.update(flat_config(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: json.dumps(value) if not isinstance(value, str) else value}


# ----------------------------------------------------------------------------- backends
class Tracker(Protocol):
    """One backend: receives a round's scalars at step = round."""

    def log(self, scalars: dict[str, float], step: int) -> None: ...

    def close(self) -> None: ...


class TensorBoardTracker:
    """Event files through `torch.utils.tensorboard.SummaryWriter`.

    `purge_step`: on resume, TensorBoard drops events at this step and later written before
    (a round logged halfway when the run stopped), so each step holds one value.
    """

    def __init__(self, log_dir: Path, purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def log(self, scalars: dict[str, float], step: int) -> None:
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, global_step=step)
        self.writer.flush()  # a round on disk as soon as it is logged

    def close(self) -> None:
        self.writer.close()


class MlflowTracker:
    """One MLflow run in a local SQLite store (MLflow's recommended local backend; its file
    store is deprecated). A resumed run reopens the run by its id."""

    def __init__(
        self,
        store: Path,
        experiment: str,
        run_name: str,
        *,
        run_id: str | None = None,
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        # Offline: MLflow's usage telemetry would otherwise try to reach its servers.
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.tracking import MlflowClient

        self._metric = Metric
        store.parent.mkdir(parents=True, exist_ok=True)
        self.tracking_uri = f"sqlite:///{store.resolve()}"
        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        if run_id is not None:
            self.client.update_run(run_id, status="RUNNING")
            self.run_id = run_id
            return
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = (
            found.experiment_id
            if found is not None
            else self.client.create_experiment(
                experiment, artifact_location=(store.parent / "mlartifacts").resolve().as_uri()
            )
        )
        self.run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id
        self.client.log_batch(
            self.run_id,
            params=[Param(k, v[:6000]) for k, v in (params or {}).items()],
            tags=[RunTag(k, v) for k, v in (tags or {}).items()],
        )

    def log(self, scalars: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        metrics = [self._metric(k, v, now, step) for k, v in scalars.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


# ----------------------------------------------------------------------------- the run's set
class Trackers:
    """The trackers of one run: logs each round once, and remembers in `tracking.json` the last
    round logged (and the MLflow run id) for a resumed run."""

    def __init__(
        self,
        trackers: Sequence[Tracker],
        run_dir: Path,
        logged_through: int = -1,
        mlflow_run_id: str | None = None,
    ) -> None:
        self.trackers = list(trackers)
        self.run_dir = run_dir
        self.logged_through = logged_through
        self.mlflow_run_id = mlflow_run_id

    @classmethod
    def none(cls) -> Trackers:
        """No tracker: logging does nothing and writes nothing."""
        return cls([], Path())

    def log_round(
        self, record: dict[str, Any], selections: list[dict[str, Any]] | None = None
    ) -> None:
        """Log one round's record with its `selections.jsonl` records (None: read back from the
        run folder, for rounds logged after the fact); a round logged before (a resumed run
        re-running it) is skipped, so every step holds one value."""
        round_idx = int(record["round"])
        if not self.trackers or round_idx <= self.logged_through:
            return
        if selections is None:
            selections = round_selections(self.run_dir, round_idx)
        scalars = round_scalars(record, selections)
        for tracker in self.trackers:
            tracker.log(scalars, round_idx)
        self.logged_through = round_idx
        self._save()

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()

    def _save(self) -> None:
        state = {"logged_through": self.logged_through, "mlflow_run_id": self.mlflow_run_id}
        path = self.run_dir / STATE_FILE
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(partial, path)


def open_trackers(
    config: ExperimentConfig, run_dir: Path, history: Sequence[dict[str, Any]] = ()
) -> Trackers:
    """The trackers `config.tracking` asks for (none: nothing is written). `history` holds the
    rounds already run (a resumed run): those not logged yet are logged now."""
    settings: TrackingConfig = config.tracking
    if not settings.backends:
        return Trackers.none()
    require_backends(settings.backends)
    state_path = run_dir / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    logged = int(state.get("logged_through", -1))
    run_id = state.get("mlflow_run_id")
    shared = Path(settings.dir) if settings.dir else None
    trackers: list[Tracker] = []
    if "tensorboard" in settings.backends:
        log_dir = shared / "tensorboard" / run_dir.name if shared else run_dir / "tensorboard"
        trackers.append(TensorBoardTracker(log_dir, purge_step=logged + 1 if logged >= 0 else None))
    if "mlflow" in settings.backends:
        mlflow = MlflowTracker(
            (shared or run_dir) / "mlflow.db",
            settings.experiment or config.name,
            run_dir.name,
            run_id=run_id,
            params=flat_config(config.model_dump(mode="json")),
            tags={
                "lada.run_dir": str(run_dir.resolve()),
                "lada.host": config.host.name,
                "lada.lada_enabled": str(config.lada_enabled),
                "lada.seed": str(config.seed),
            },
        )
        trackers.append(mlflow)
        run_id = mlflow.run_id
    out = Trackers(trackers, run_dir, logged, run_id)
    out._save()
    for record in history:
        out.log_round(record)
    return out
