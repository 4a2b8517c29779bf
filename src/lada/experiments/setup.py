"""Building an experiment's parties from its config: data, split, models, plug-ins, host."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import cast

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
from lada.models.wrapper import ReasoningModel
from lada.tasks.item import ReasoningItem
from lada.tasks.splits import FederatedSplit, split_federated


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch so a config and seed give the same run on one machine."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_items(config: ExperimentConfig) -> list[ReasoningItem]:
    """Every item the split draws from: a built-in suite or a data file."""
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


def load_split(config: ExperimentConfig) -> FederatedSplit:
    """The run's public pool and client splits: the same for every party that computes it."""
    seed_everything(config.seed)
    return make_split(config, load_items(config))


def build_server(
    config: ExperimentConfig, public_pool: list[ReasoningItem], console: Console | None = None
) -> ServerParty:
    """The server party: the LLM, its plug-in and the public pool (no client data)."""
    console = console or Console(stderr=True)
    llm = make_llm(config, console)
    check_encodable(llm, public_pool, where="llm on the public pool")
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
) -> ClientParty:
    """Client `client_id`: its SLM, its plug-in and its private train/test split."""
    slm = make_slm(config, client_id)
    check_encodable(slm, [*train, *test], where=f"slm_{client_id} on its own items")
    return ClientParty(
        name=f"client_{client_id}",
        model=slm,
        plugin=make_plugin(config, f"client_{client_id}", client_id + 1),
        client_id=client_id,
        train=train,
        test=test,
    )


def build_federation(config: ExperimentConfig, console: Console | None = None) -> Federation:
    split = load_split(config)
    server = build_server(config, split.public_pool, console)
    clients = [
        build_client(config, k, part.train, part.test) for k, part in enumerate(split.clients)
    ]
    host = make_host(config.host, config.train, config.lada_enabled, config.budget)
    return Federation(host=host, server=server, clients=clients, split=split)
