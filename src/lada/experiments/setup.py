"""Building an experiment's parties from its config: data, split, models, plug-ins, host."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from rich.console import Console

from lada.experiments.config import ExperimentConfig
from lada.hosts.base import ClientParty, Host, ServerParty
from lada.hosts.registry import make_host
from lada.method.plugin import LadaPlugin
from lada.models.coverage import check_encodable
from lada.models.device import resolve_device
from lada.models.presets import TINY_PRESETS, load_model
from lada.models.pretrain import pretrained_llm
from lada.models.shipped import SHIPPED
from lada.models.tokenizer import CHAR_ALPHABET
from lada.models.wrapper import MODEL_CARD, ReasoningModel, read_card
from lada.tasks.item import ReasoningItem
from lada.tasks.normalize import NormalizationReport, normalize_items
from lada.tasks.splits import FederatedSplit, split_federated

#: Logs what text normalisation changed in the run's items (`data.normalize_text`).
log = logging.getLogger("lada.data")


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch so a config and seed give the same run on one machine."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_items(config: ExperimentConfig) -> list[ReasoningItem]:
    """Every item the split draws from (a built-in suite or a data file), normalised as the
    config says (`normalize_for_models`)."""
    return load_items_reported(config)[0]


def load_items_reported(
    config: ExperimentConfig,
) -> tuple[list[ReasoningItem], NormalizationReport | None]:
    """`load_items`, with the report of what text normalisation changed (None when off)."""
    return normalize_for_models(config, read_items(config), data_label(config))


def read_items(config: ExperimentConfig) -> list[ReasoningItem]:
    """Every item the split draws from, as the suite or the data file gives it."""
    data = config.data
    split = data.split
    if data.suite is not None:
        from lada.tasks.gym_suite import SUITES, load_suite

        if data.suite not in SUITES:
            raise ValueError(f"data.suite: unknown suite {data.suite!r}; known: {sorted(SUITES)}")
        # Headroom: domain mixes and the Dirichlet draw do not use every domain evenly.
        n_domains = len(SUITES[data.suite].domains)
        share = split.evaluation_share
        if share is None:
            needed = split.n_public + split.n_clients * (split.n_train + split.n_test)
            per_domain = 2 * -(-needed // n_domains)
            return load_suite(data.suite, n=per_domain * n_domains, seed=config.seed)
        # Training questions and questions reserved for evaluation are drawn separately, so a
        # small reserved share still yields enough test items.
        n_open = 2 * -(-(split.n_public + split.n_clients * split.n_train) // n_domains)
        n_reserved = 2 * -(-(split.n_clients * split.n_test) // n_domains)
        seed = config.seed
        items = load_suite(
            data.suite, n=n_open * n_domains, seed=seed, evaluation_share=share, reserved="exclude"
        )
        if n_reserved:
            items += load_suite(
                data.suite,
                n=n_reserved * n_domains,
                seed=seed,
                evaluation_share=share,
                reserved="only",
            )
        return items
    from lada.tasks.loaders import FileFormat, load_file

    if data.path is None:  # DataConfig holds a suite or a path
        raise ValueError("data: neither data.suite nor data.path is set")
    # load_file checks the format name and says which ones exist.
    return load_file(data.path, format=cast(FileFormat, data.format)).items


def data_label(config: ExperimentConfig) -> str:
    """The run's data in words, for messages: `data file PATH` or `suite NAME`."""
    if config.data.path is not None:
        return f"data file {config.data.path}"
    return f"suite {config.data.suite!r}"


def uses_tiny_tokenizer(preset: str) -> bool:
    """Whether a model name (tiny preset, shipped base, saved directory) reads text with a tiny
    preset's tokenizer, whose alphabet is printable ASCII (`lada.models.tokenizer`)."""
    if preset in TINY_PRESETS or preset in SHIPPED:
        return True
    directory = Path(preset)
    if (directory / MODEL_CARD).exists():
        return read_card(directory)["source"]["kind"] in ("tiny", "shipped")
    return False


def normalization_alphabet(config: ExperimentConfig) -> str | None:
    """The alphabet items are rewritten into (`data.normalize_text`), or None to keep them."""
    mode = config.data.normalize_text
    if mode == "ascii":
        return CHAR_ALPHABET
    if mode == "auto" and any(
        uses_tiny_tokenizer(spec.preset) for spec in [config.llm, *config.slms]
    ):
        return CHAR_ALPHABET
    return None


def normalize_for_models(
    config: ExperimentConfig, items: Sequence[ReasoningItem], where: str
) -> tuple[list[ReasoningItem], NormalizationReport | None]:
    """`items` normalised per `data.normalize_text` (every party of a run alike), and the report
    of what changed (None when normalisation is off). A change is logged, never silent."""
    alphabet = normalization_alphabet(config)
    if alphabet is None:
        return list(items), None
    normalised, report = normalize_items(items, alphabet, config.data.placeholder)
    if report.items_changed:
        log.warning("%s: %s", where, report.describe())
    return normalised, report


def make_split(config: ExperimentConfig, items: list[ReasoningItem]) -> FederatedSplit:
    split = config.data.split.model_copy(update={"seed": config.data.split.seed + config.seed})
    return split_federated(items, **split.model_dump())


def make_llm(config: ExperimentConfig, console: Console) -> ReasoningModel:
    spec = config.llm
    if spec.pretrain is not None and spec.preset in TINY_PRESETS:
        pretrain = spec.pretrain.model_copy(update={"preset": spec.preset})
        llm = pretrained_llm(pretrain, device=config.device, console=console)
        llm.set_learning_rate(spec.learning_rate)
        return llm
    return load_model(
        spec.preset,
        device=config.device,
        dtype=config.dtype,
        lora=spec.lora,
        seed=config.seed,
        learning_rate=spec.learning_rate,
        label="llm",
    )


def make_slm(config: ExperimentConfig, client_id: int) -> ReasoningModel:
    spec = config.slm_for(client_id)
    return load_model(
        spec.preset,
        device=config.device,
        dtype=config.dtype,
        lora=spec.lora,
        seed=config.seed * 1000 + client_id,
        learning_rate=spec.learning_rate,
        label=f"slm_{client_id}",
    )


def make_plugin(config: ExperimentConfig, party: str, seed_offset: int):
    """The LaDa plug-in of one receiving side, or None when the host runs alone."""
    if not config.lada_enabled:
        return None
    lada = config.lada.model_copy(update={"seed": config.lada.seed + config.seed + seed_offset})
    return LadaPlugin(lada, device=str(resolve_device(config.device)))


@dataclass
class Federation:
    """Everything one run needs: host, server, clients and the split they came from."""

    host: Host
    server: ServerParty
    clients: list[ClientParty]
    split: FederatedSplit
    #: What text normalisation changed in the items (`NormalizationReport.to_dict`), or None.
    normalization: dict[str, Any] | None = None


def load_split(config: ExperimentConfig) -> FederatedSplit:
    """The run's public pool and client splits: the same for every party that computes it."""
    return load_split_reported(config)[0]


def load_split_reported(
    config: ExperimentConfig,
) -> tuple[FederatedSplit, NormalizationReport | None]:
    """`load_split`, with the report of what text normalisation changed (None when off)."""
    seed_everything(config.seed)
    items, report = load_items_reported(config)
    return make_split(config, items), report


def build_server(
    config: ExperimentConfig, public_pool: list[ReasoningItem], console: Console | None = None
) -> ServerParty:
    """The server party: the LLM, its plug-in and the public pool (no client data)."""
    console = console or Console(stderr=True)
    llm = make_llm(config, console)
    check_encodable(llm, public_pool, where=f"llm on the public pool ({data_label(config)})")
    return ServerParty(
        name="server",
        model=llm,
        plugin=make_plugin(config, "server", 0),
        public_pool=public_pool,
    )


def build_client(
    config: ExperimentConfig,
    client_id: int,
    train: list[ReasoningItem],
    test: list[ReasoningItem],
    data: str | None = None,
) -> ClientParty:
    """Client `client_id`: its SLM, its plug-in and its private train/test split.

    `data` names where the items came from in messages (default: the config's data).
    """
    slm = make_slm(config, client_id)
    where = f"slm_{client_id} on its own items ({data or data_label(config)})"
    check_encodable(slm, [*train, *test], where=where)
    return ClientParty(
        name=f"client_{client_id}",
        model=slm,
        plugin=make_plugin(config, f"client_{client_id}", client_id + 1),
        client_id=client_id,
        train=train,
        test=test,
    )


def build_federation(config: ExperimentConfig, console: Console | None = None) -> Federation:
    split, report = load_split_reported(config)
    server = build_server(config, split.public_pool, console)
    clients = [
        build_client(config, k, part.train, part.test) for k, part in enumerate(split.clients)
    ]
    host = make_host(config.host, config.train, config.lada_enabled, config.budget)
    normalization = None if report is None else report.to_dict()
    return Federation(
        host=host, server=server, clients=clients, split=split, normalization=normalization
    )
