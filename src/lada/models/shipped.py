"""Pretrained tiny models shipped with the package, loaded by name like any other preset.

Pretraining a competent teacher from scratch takes tens of minutes on a laptop CPU, so the
offline setting ships its two bases as small half-precision safetensors files under
`lada/models/weights/`, each beside a JSON record of the `PretrainConfig` it was trained with
and what it measured. `lada pretrain NAME` retrains one from that very config; a test checks that
the recorded config is the one below, so the shipped weights and the code cannot drift apart.

- `proof-teacher`: the server LLM of the offline setting. A tiny-2m model taught the three levels
  of the 'proof' suite it is meant to teach (chain_sum 2, leg_counting 1, basic_arithmetic 1);
  gcd 1 is held out, so only clients know it. Questions reserved for evaluation are excluded.
- `proof-student`: the client SLMs' general base. A tiny-1m model trained past the point where
  small models start to learn arithmetic procedures (about 2,000 steps) on the 'general' suite:
  other levels and families, and only a glimpse of the three levels the teacher masters. It
  starts weak on every domain it is tested on, as a real SLM starts weak on a new domain, but
  it has the general competence to learn one in a few hundred steps.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from lada.models.pretrain_config import PretrainConfig
from lada.models.training import LRSchedule, evaluate
from lada.models.wrapper import ReasoningModel
from lada.tasks.gym_suite import SUITES, load_suite
from lada.tasks.item import ReasoningItem

#: Where the shipped weights live inside the installed package.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: Seed of the fixed evaluation sample recorded with each shipped model (reserved questions).
SAMPLE_SEED = 4242
#: Greedy generation limit when measuring a shipped model (the suites' paths stay far below).
MEASURE_MAX_NEW_TOKENS = 176


@dataclass(frozen=True)
class ShippedModel:
    """A named pretrained base: the config that trains it and the label it gets in a run."""

    name: str
    pretrain: PretrainConfig
    description: str

    @property
    def weights_path(self) -> Path:
        return WEIGHTS_DIR / f"{self.name}.safetensors"

    @property
    def record_path(self) -> Path:
        return WEIGHTS_DIR / f"{self.name}.json"

    def record(self) -> dict[str, Any]:
        """The JSON record written beside the weights (config, measurements)."""
        return json.loads(self.record_path.read_text())


_SCHEDULE = LRSchedule(warmup_fraction=0.05, decay="cosine", min_lr_fraction=0.1)

SHIPPED: dict[str, ShippedModel] = {
    "proof-teacher": ShippedModel(
        name="proof-teacher",
        pretrain=PretrainConfig(
            preset="tiny-2m",
            suite="proof",
            items_per_domain=1600,
            held_out_domains=["gcd"],
            epochs=12,
            batch_size=16,
            learning_rate=8e-4,
            schedule=_SCHEDULE,
        ),
        description="server LLM: masters chain_sum 2, leg_counting 1, basic_arithmetic 1",
    ),
    "proof-student": ShippedModel(
        name="proof-student",
        pretrain=PretrainConfig(
            preset="tiny-1m",
            suite="general",
            items_per_domain=600,
            held_out_domains=[],
            epochs=10,
            batch_size=16,
            learning_rate=1e-3,
            schedule=_SCHEDULE,
        ),
        description="client SLM base: answer format and arithmetic facts, no 'proof' level",
    ),
}


def load_shipped_weights(model: torch.nn.Module, shipped: ShippedModel) -> None:
    """Copy the shipped half-precision weights into a freshly built model of its architecture.

    Values are cast to the model's own dtype (fp32 on CPU by default); tied weights (the LM head
    shares the embedding) are stored once and restored through the tie.
    """
    path = shipped.weights_path
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: the shipped weights of {shipped.name!r} are missing from this install; "
            f"reinstall lada, or train them with `lada pretrain {shipped.name}`"
        )
    tensors = load_file(str(path))
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    tied = {"lm_head.weight"}
    missing = [name for name in missing if name not in tied]
    if missing or unexpected:
        raise ValueError(
            f"{path}: weights do not match the {shipped.pretrain.preset} architecture "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


def export_shipped(
    model: torch.nn.Module, shipped: ShippedModel, record: dict[str, Any], out_dir: Path
) -> Path:
    """Write `<name>.safetensors` (fp16, each tensor once) and `<name>.json` into `out_dir`.

    `record` holds what was measured (accuracy, steps, wall time); the pretraining config is
    added here, so the file always says exactly how the weights were made.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in model.state_dict().items():
        if tensor.data_ptr() in seen:  # a tied weight: restored through the tie on load
            continue
        seen.add(tensor.data_ptr())
        tensors[name] = tensor.detach().to("cpu", torch.float16).contiguous()
    weights = out_dir / f"{shipped.name}.safetensors"
    partial = weights.with_name(weights.name + ".partial")
    save_file(tensors, str(partial))
    os.replace(partial, weights)
    full_record = {
        "name": shipped.name,
        "description": shipped.description,
        "pretrain": shipped.pretrain.model_dump(mode="json"),
        **record,
    }
    (out_dir / f"{shipped.name}.json").write_text(json.dumps(full_record, indent=2) + "\n")
    return weights


def evaluation_sample(
    suite: str, evaluation_share: float, per_domain: int, seed: int = SAMPLE_SEED
) -> list[ReasoningItem]:
    """Fresh items of every level of `suite`, from questions reserved for evaluation (never
    pretrained on), `per_domain` per level (in proportion to the suite's weights)."""
    levels = {(spec.name, spec.difficulty) for spec in SUITES[suite].domains}
    return load_suite(
        suite,
        n=per_domain * len(levels),
        seed=seed,
        reserved="only",
        evaluation_share=evaluation_share,
    )


def measure(
    model: ReasoningModel,
    shipped: ShippedModel,
    per_domain: int,
    *,
    suite: str | None = None,
    seed: int = SAMPLE_SEED,
) -> dict[str, Any]:
    """Accuracy per domain on a fixed sample of reserved questions of `suite` (default: the
    model's own pretraining suite), by greedy decoding."""
    config = shipped.pretrain
    items = evaluation_sample(suite or config.suite, config.evaluation_share, per_domain, seed)
    result = evaluate(model, items, batch_size=64, max_new_tokens=MEASURE_MAX_NEW_TOKENS)
    return {
        "suite": suite or config.suite,
        "seed": seed,
        "n": result.n,
        "accuracy": result.accuracy,
        "per_domain": dict(sorted(result.per_domain.items())),
    }
