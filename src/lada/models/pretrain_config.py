"""How a tiny model is pretrained before a run: the config, and the cache key it gives.

Kept apart from `lada.models.pretrain` (which trains) so that the shipped-model registry and the
presets can name a pretraining config without importing the training code.
"""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel, ConfigDict, Field

from lada.models.training import LRSchedule
from lada.tasks.holdout import DEFAULT_EVALUATION_SHARE


class PretrainConfig(BaseModel):
    """How the server LLM is pretrained before the federation starts."""

    model_config = ConfigDict(extra="forbid")

    preset: str = Field("tiny-10m", description="Tiny preset pretrained from scratch.")
    suite: str = Field("default", description="Task suite whose domains make up 'general data'.")
    items_per_domain: int = Field(600, ge=1, description="Pretraining items per kept domain.")
    held_out_domains: list[str] = Field(
        default_factory=lambda: ["leg_counting"],
        description="Domains only clients hold: left out of (or under-sampled in) pretraining.",
    )
    held_out_fraction: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of items_per_domain kept for held-out domains (0 = left out).",
    )
    loss_on_question: bool = Field(
        True,
        description="Train on the whole 'Q: ... A: ...' text, not only the path, so the LLM can "
        "also write new task items (CrossLM needs this).",
    )
    epochs: int = Field(4, ge=1, description="Passes over the pretraining items.")
    batch_size: int = Field(32, ge=1, description="Items per optimizer step.")
    learning_rate: float = Field(2e-3, gt=0, description="Peak AdamW learning rate.")
    schedule: LRSchedule | None = Field(
        None,
        description="Warmup and decay of the rate over the whole pretraining run; unset keeps "
        "the rate constant.",
    )
    seed: int = Field(0, ge=0, description="Seed of data generation, init and shuffling.")
    evaluation_share: float = Field(
        DEFAULT_EVALUATION_SHARE,
        ge=0,
        le=1,
        description="Questions reserved for evaluation at this share are never pretrained on "
        "(lada.tasks.holdout); an experiment's data.split.evaluation_share may not exceed it.",
    )

    def key(self) -> str:
        """Cache key: changes whenever anything that shapes the pretrained weights changes."""
        # Unset optional fields are left out, so keys of configs written before they existed hold.
        payload = json.dumps(self.model_dump(exclude_none=True), sort_keys=True)
        return f"{self.preset}-{hashlib.sha256(payload.encode()).hexdigest()[:12]}"
