"""The one typed experiment config: a TOML/YAML file, overridable with `--set a.b=value`.

Every number an experiment uses is a field here (or in the nested configs of the layers), so a
run folder's `config.toml` says everything needed to repeat it. Invalid configs fail before any
work, with the offending field named.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import tomli_w
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from lada.federation.config import FederationConfig
from lada.hosts.budget import Budget
from lada.hosts.config import FedCoTConfig, HostConfig, TrainConfig
from lada.method.config import LadaConfig
from lada.models.presets import TINY_PRESETS, LoraSpec
from lada.models.pretrain import PretrainConfig
from lada.models.shipped import SHIPPED
from lada.models.tokenizer import CHAR_ALPHABET
from lada.tasks.splits import SplitConfig


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DataConfig(_Strict):
    """Where items come from and how they are split into a public pool and client splits."""

    suite: str | None = Field(
        None, description="Built-in task suite (lada.tasks.gym_suite); 'default' if no path."
    )
    path: str | None = Field(None, description="Data file instead of a suite (GSM8K, SVAMP, ...).")
    format: str = Field("auto", description="Format of `path`: gsm8k|svamp|mc|bigbench|auto.")
    normalize_text: Literal["auto", "none", "ascii"] = Field(
        "auto",
        description="Rewrite item text into printable ASCII before any model reads it "
        "(lada.tasks.normalize: NFKC, typographic replacements such as en dash -> '-', curly "
        "quotes -> straight, '×' -> '*', accents dropped, then `placeholder` for the rest): "
        "'auto' when any model of the run uses a tiny preset's tokenizer (tiny-*, proof-*), "
        "which reads printable ASCII only; 'ascii' always; 'none' never. What changed is "
        "logged and counted in summary.json; the tokenizer coverage check runs after it.",
    )
    placeholder: str = Field(
        "?",
        max_length=1,
        description="Stands in for a character normalisation cannot spell in ASCII (e.g. "
        "'€', CJK); one printable ASCII character, or '' to remove such characters.",
    )
    split: SplitConfig = Field(default_factory=SplitConfig, description="Public pool + clients.")

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if self.suite is not None and self.path is not None:
            raise ValueError("set data.suite or data.path, not both")
        if self.suite is None and self.path is None:
            self.suite = "default"
        return self

    @field_validator("placeholder")
    @classmethod
    def _placeholder_is_plain(cls, value: str) -> str:
        if value and (value not in CHAR_ALPHABET or value == "\n"):
            raise ValueError(
                f"{value!r} is not a printable ASCII character; use one such as '?', or '' to "
                "remove what cannot be spelled"
            )
        return value


class ModelSpec(_Strict):
    """A model of one party."""

    preset: str = Field(description="Tiny preset, 'smollm2-135m', a hub id or a local directory.")
    lora: LoraSpec | None = Field(None, description="Attach a LoRA adapter (trains only it).")
    learning_rate: float = Field(1e-3, gt=0, description="AdamW learning rate of this model.")


class LLMSpec(ModelSpec):
    """The server LLM; tiny presets are pretrained once (cached) per `pretrain`."""

    preset: str = "tiny-10m"
    learning_rate: float = Field(3e-4, gt=0, description="AdamW learning rate of the LLM.")
    pretrain: PretrainConfig | None = Field(
        default_factory=PretrainConfig,
        description="Pretraining of a tiny LLM before the run (cached); null for hub models.",
    )


#: TrainConfig fields that moved to the top-level `budget` table, with what to set instead.
class EvalConfig(_Strict):
    """How the experimenter measures the models (outside the federation's exchanges)."""

    llm_rounds: Literal["all", "first_last", "none"] = Field(
        "all", description="When the LLM is scored on the union of client test splits."
    )
    llm_max_items_per_client: int | None = Field(
        None, ge=1, description="Score the LLM on at most this many test items per client."
    )
    clients: Literal["all", "participants"] = Field(
        "all",
        description="Clients whose SLM is scored each round: all of them, or only those that "
        "took part (federation.clients_per_round; round 0 scores all).",
    )


class CheckpointConfig(_Strict):
    """Round checkpoints, so `lada run --resume RUN_DIR` continues after an interruption."""

    enabled: bool = Field(True, description="Write a checkpoint after every round.")
    keep: int = Field(2, ge=1, description="Newest checkpoints kept (older ones are deleted).")


class TrackingConfig(_Strict):
    """Experiment trackers that receive each round's metrics (lada.experiments.tracking).

    Optional (`pip install 'lada[tracking]'`) and offline: files only, nothing logged unless
    `backends` names a tracker.
    """

    backends: list[Literal["tensorboard", "mlflow"]] = Field(
        default_factory=list,
        description="Trackers to log to: 'tensorboard' (event files), 'mlflow' (a local SQLite "
        "store); empty: none. `lada run --tracker NAME` sets it.",
    )
    dir: str = Field(
        "",
        description="Where the trackers write; '' = the run folder (RUN_DIR/tensorboard, "
        "RUN_DIR/mlflow.db). A shared folder collects many runs: DIR/tensorboard/<run folder "
        "name> and one DIR/mlflow.db.",
    )
    experiment: str = Field("", description="MLflow experiment name; '' = the config's `name`.")

    @field_validator("backends")
    @classmethod
    def _each_once(cls, value: list[str]) -> list[str]:
        twice = sorted({b for b in value if value.count(b) > 1})
        if twice:
            raise ValueError(f"{twice} listed more than once")
        return value


class ExperimentConfig(_Strict):
    """One experiment: data, models, host, LaDa and the run's own settings."""

    name: str = Field("experiment", description="Run name (folder prefix).")
    seed: int = Field(0, ge=0, description="Seed of this run; `lada compare` uses `seeds`.")
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], description="Seeds for compare.")
    rounds: int = Field(3, ge=1, description="Federated rounds.")
    output_dir: str = Field("runs", description="Parent folder of run folders.")
    device: str = Field("auto", description="auto (CUDA when present, else CPU), cpu, cuda:0...")
    dtype: str = Field("auto", description="auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16.")
    runtime: Literal["inprocess", "flower-sim"] = Field("inprocess", description="Who carries.")
    data: DataConfig = Field(default_factory=DataConfig)
    llm: LLMSpec = Field(default_factory=LLMSpec)
    slms: list[ModelSpec] = Field(
        default_factory=lambda: [ModelSpec(preset="tiny-1m")],
        min_length=1,
        description="One spec for every client, or one per client.",
    )
    train: TrainConfig = Field(default_factory=TrainConfig)
    budget: Budget = Field(
        default_factory=Budget,
        description="Optimizer steps per party per round for learning on public items, the "
        "same with and without LaDa (lada.hosts.budget).",
    )
    evaluation: EvalConfig = Field(default_factory=EvalConfig)
    host: HostConfig = Field(default_factory=FedCoTConfig)
    lada_enabled: bool = Field(True, description="Plug LaDa into the host (false = host alone).")
    lada: LadaConfig = Field(default_factory=LadaConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    federation: FederationConfig = Field(default_factory=FederationConfig)

    @model_validator(mode="after")
    def _slms_match_clients(self) -> ExperimentConfig:
        n = self.data.split.n_clients
        if len(self.slms) not in (1, n):
            raise ValueError(f"slms: give 1 spec or {n} (one per client), got {len(self.slms)}")
        if self.federation.min_clients is not None and self.federation.min_clients > n:
            raise ValueError(f"federation.min_clients: {self.federation.min_clients} > {n} clients")
        per_round = self.federation.clients_per_round
        if per_round is not None and per_round > n:
            raise ValueError(f"federation.clients_per_round: {per_round} > {n} clients")
        floor = self.federation.min_clients
        if per_round is not None and floor is not None and floor > per_round:
            raise ValueError(
                f"federation.min_clients: {floor} > federation.clients_per_round ({per_round}): "
                "no round could go on"
            )
        return self

    @model_validator(mode="after")
    def _test_questions_never_pretrained(self) -> ExperimentConfig:
        """A test question must be one no pretrained model of the run has trained on."""
        share = self.data.split.evaluation_share
        if share is None:
            return self
        limits = {
            f"{where}: shipped model {spec.preset!r}": SHIPPED[spec.preset].pretrain
            for where, spec in [("llm.preset", self.llm)]
            + [(f"slms.{k}.preset", s) for k, s in enumerate(self.slms)]
            if spec.preset in SHIPPED
        }
        if self.llm.pretrain is not None and self.llm.preset in TINY_PRESETS:
            limits["llm.pretrain"] = self.llm.pretrain
        host_share = getattr(self.host, "reserved_share", None)
        if host_share is not None and host_share < share:
            raise ValueError(
                f"host.reserved_share: {host_share} is below data.split.evaluation_share "
                f"({share}), so generated items could repeat test questions"
            )
        for where, pretrain in limits.items():
            if share > pretrain.evaluation_share:
                raise ValueError(
                    f"data.split.evaluation_share: {share} exceeds the share {where} excluded "
                    f"from its pretraining ({pretrain.evaluation_share}), so some test questions "
                    "may have been pretrained on; use at most that share"
                )
        return self

    def slm_for(self, client_id: int) -> ModelSpec:
        return self.slms[0] if len(self.slms) == 1 else self.slms[client_id]


# ----------------------------------------------------------------------- loading and overrides
def _parse_value(text: str) -> Any:
    """`--set` values: TOML/JSON literals (numbers, booleans, lists, strings), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one `dotted.key=value` to a nested dict (lists indexed by number: slms.0.preset)."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE")
    key, text = assignment.split("=", 1)
    parts = key.strip().split(".")
    node: Any = data
    for i, part in enumerate(parts):
        where = ".".join(parts[: i + 1])
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(
                    f"--set {key}: {where}: no list entry {part!r} (the list has {len(node)})"
                )
            if last:
                node[int(part)] = _parse_value(text)
                return
            node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = _parse_value(text)
                return
            if part not in node or node[part] is None:
                node[part] = {}
            node = node[part]
        else:
            raise ConfigError(f"--set {key}: {'.'.join(parts[:i])} is not a table")


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from err
    try:
        data = (
            (yaml.safe_load(text) or {})
            if path.suffix in (".yaml", ".yml")
            else tomllib.loads(text)
        )
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: not valid {path.suffix[1:].upper()}: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a table, got {type(data).__name__}")
    return data


def _with_host_name(data: dict[str, Any]) -> dict[str, Any]:
    """A `[host]` table without `name` means the default host, as a missing table does.

    The host is a tagged union, so without this a lone `--set host.rationale_weight=0.7`
    would fail with pydantic's "Unable to extract tag" instead of setting the default host's
    field.
    """
    host = data.get("host")
    if not isinstance(host, dict) or "name" in host:
        return data
    default_name = FedCoTConfig().name  # the `host` field's default
    return {**data, "host": {"name": default_name, **host}}


def validate(data: dict[str, Any], origin: str = "config") -> ExperimentConfig:
    """Validate a config dict; the error names each offending field by its dotted path."""
    try:
        return ExperimentConfig.model_validate(_with_host_name(data))
    except ValidationError as err:
        lines = []
        for e in err.errors():
            where = ".".join(str(p) for p in e["loc"]) or "(top level)"
            lines.append(f"{origin}: {where}: {e['msg']}")
        raise ConfigError("\n".join(lines)) from None


def load_config(path: Path | str | None, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read a TOML/YAML config (or the defaults when `path` is None) and apply overrides."""
    data = read_config_file(Path(path)) if path is not None else {}
    for assignment in overrides:
        apply_override(data, assignment)
    return validate(data, origin=str(path) if path is not None else "config")


def dump_config(config: ExperimentConfig) -> str:
    """The resolved config as TOML (None values dropped: TOML has no null)."""
    return tomli_w.dumps(_drop_none(config.model_dump(mode="json")))


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value
