"""Host frameworks by name."""

from __future__ import annotations

import importlib
from typing import Any

from lada.hosts.base import Host
from lada.hosts.budget import Budget
from lada.hosts.config import HostConfig, TrainConfig

#: Host name -> "module:class", imported on first use.
HOSTS: dict[str, str] = {
    "fedcot": "lada.hosts.fedcot:FedCoT",
    "fedcollm": "lada.hosts.fedcollm:FedCoLLM",
    "fedmkt": "lada.hosts.fedmkt:FedMKT",
    "crosslm": "lada.hosts.crosslm:CrossLM",
}


def host_class(name: str) -> type[Host[Any]]:
    if name not in HOSTS:
        raise ValueError(f"host.name: unknown host {name!r}; known: {sorted(HOSTS)}")
    module, cls = HOSTS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make_host(
    config: HostConfig, train: TrainConfig, lada_enabled: bool, budget: Budget
) -> Host[Any]:
    """The host named by `config.name`, with or without the LaDa plug-in, held to `budget`."""
    return host_class(config.name)(config, train, lada_enabled, budget)
