"""One-time pretraining of the server LLM of the offline setting, cached by its config.

A built-in tiny model starts from random weights; to be a competent teacher it first learns the
general task suite. Some domains are left out (or under-sampled) on purpose: only clients hold
them privately, so the SLM -> LLM direction has real knowledge to carry.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console

from lada.models.presets import cache_dir, load_model
from lada.models.training import LRSchedule, sft, sft_on_paths
from lada.models.wrapper import ReasoningModel
from lada.tasks.gym_suite import SUITES, build_suite
from lada.tasks.prompts import gold_path, render_prompt

#: Seed offset so pretraining items are drawn from streams the experiment's splits do not use.
PRETRAIN_SEED_OFFSET = 10_000


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

    def key(self) -> str:
        """Cache key: changes whenever anything that shapes the pretrained weights changes."""
        # Unset optional fields are left out, so keys of configs written before they existed hold.
        payload = json.dumps(self.model_dump(exclude_none=True), sort_keys=True)
        return f"{self.preset}-{hashlib.sha256(payload.encode()).hexdigest()[:12]}"


def pretraining_items(config: PretrainConfig):
    """General-data items: the suite's domains with the held-out ones removed or thinned."""
    suite = SUITES[config.suite]
    domains = []
    for spec in suite.domains:
        held_out = spec.name in config.held_out_domains
        weight = config.held_out_fraction if held_out else 1.0
        if weight > 0:
            domains.append(spec.model_copy(update={"weight": weight}))
    if not domains:
        raise ValueError("held_out_domains: every domain of the suite is held out")
    return build_suite(
        suite.model_copy(
            update={
                "domains": domains,
                "items_per_domain": config.items_per_domain,
                "total_items": None,
                "seed": suite.seed + config.seed + PRETRAIN_SEED_OFFSET,
            }
        )
    )


def pretrained_dir(config: PretrainConfig) -> Path:
    """Where the model pretrained with `config` is cached (it may not exist yet)."""
    return cache_dir() / "pretrained" / config.key()


def is_pretrained(config: PretrainConfig) -> bool:
    """Whether `pretrained_llm(config)` will load from the cache instead of training."""
    return (pretrained_dir(config) / "lada_model.json").exists()


def pretrained_llm(
    config: PretrainConfig, *, device: str = "auto", console: Console | None = None
) -> ReasoningModel:
    """The pretrained LLM: loaded from the cache, or trained once and cached."""
    console = console or Console(stderr=True)
    target = pretrained_dir(config)
    if not is_pretrained(config):
        items = pretraining_items(config)
        console.print(
            f"[bold]Pretraining[/] {config.preset} on {len(items)} items "
            f"({config.epochs} epochs; once, cached in {target})"
        )
        model = load_model(
            config.preset, device=device, seed=config.seed, learning_rate=config.learning_rate
        )
        if config.loss_on_question:
            texts = [render_prompt(it) + gold_path(it) for it in items]
            sft_on_paths(
                model,
                [""] * len(texts),
                texts,
                epochs=config.epochs,
                batch_size=config.batch_size,
                seed=config.seed,
                desc=f"pretrain {config.preset}",
                schedule=config.schedule,
            )
        else:
            sft(
                model,
                items,
                epochs=config.epochs,
                batch_size=config.batch_size,
                seed=config.seed,
                desc=f"pretrain {config.preset}",
                schedule=config.schedule,
            )
        model.save(Path(target))
    model = ReasoningModel.load(target, device=device)
    model.name = "llm"
    return model
