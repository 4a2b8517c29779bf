"""One-time pretraining of the server LLM of the offline setting, cached by its config.

A built-in tiny model starts from random weights; to be a competent teacher it first learns the
general task suite. Some domains are left out (or under-sampled) on purpose: only clients hold
them privately, so the SLM -> LLM direction has real knowledge to carry.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from lada.models.persist import save_model
from lada.models.presets import cache_dir, load_model, load_model_dir
from lada.models.pretrain_config import PretrainConfig
from lada.models.training import sft, sft_on_paths
from lada.models.wrapper import ReasoningModel
from lada.tasks.gym_suite import SUITES, build_suite
from lada.tasks.item import ReasoningItem
from lada.tasks.prompts import gold_path, render_prompt

#: Seed offset so pretraining items are drawn from streams the experiment's splits do not use.
PRETRAIN_SEED_OFFSET = 10_000

__all__ = ["PretrainConfig", "is_pretrained", "pretrained_dir", "pretrained_llm"]


def pretraining_items(config: PretrainConfig) -> list[ReasoningItem]:
    """General-data items: the suite's domains with the held-out ones removed or thinned."""
    suite = SUITES[config.suite]
    domains = []
    for spec in suite.domains:
        held_out = spec.name in config.held_out_domains
        weight = spec.weight * (config.held_out_fraction if held_out else 1.0)
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
                "reserved": "exclude",
                "evaluation_share": config.evaluation_share,
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
        save_model(model, Path(target))
    model = load_model_dir(Path(target), device=device)
    model.name = "llm"
    return model
