"""Splitting items into the server's public pool and non-IID private client splits.

The public pool is drawn first, stratified over every domain (proportional to each domain's
size, at least one item per domain when the pool is large enough), because the server's LLM is
a generalist. The rest is divided among clients:

- `domain`: each client owns a domain mix (given, or derived round-robin over the sorted
  domains) and draws its items evenly across its domains: the paper's "local-domain" clients.
- `dirichlet`: the classic label-skew partition over domains (Yurochkin et al. 2019), done by
  `flwr_datasets.partitioner.DirichletPartitioner`; each client then keeps a random
  `n_train + n_test` of its partition, so every client has the same size while its domain mix
  stays Dirichlet-skewed. Needs more items than the clients use, since the partitioner hands
  out everything and only then do we cut each partition to size.
- `iid`: a uniform shuffle, as the baseline.

With `evaluation_share` set, test items are only questions reserved for evaluation and the
public pool and train splits only the others (`lada.tasks.holdout`), so no test question can
appear in anything a party trains on, pretraining included. Each client's test split then
follows the domain mix of its train split.

Everything is seeded; no item id appears in two splits (checked before returning).
"""

from __future__ import annotations

import warnings
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from lada.tasks.holdout import is_reserved
from lada.tasks.item import ReasoningItem

Partition = Literal["domain", "dirichlet", "iid"]


class SplitConfig(BaseModel):
    """How to cut items into a public pool and client splits (see `split_federated`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_public: int = Field(1000, ge=0, description="Items in the server's public pool.")
    n_clients: int = Field(3, ge=1, description="Number of clients (one SLM each).")
    n_train: int = Field(1000, ge=1, description="Private training items per client.")
    n_test: int = Field(500, ge=0, description="Private test items per client.")
    partition: Partition = Field(
        "domain",
        description="How private items are spread over clients: one domain mix per client "
        "('domain'), Dirichlet skew over domains ('dirichlet'), or uniformly ('iid').",
    )
    client_domains: list[list[str]] | None = Field(
        None,
        description="For partition='domain': the domains of each client, one list per client. "
        "None derives them round-robin over the sorted domain names.",
    )
    dirichlet_alpha: float = Field(
        0.5,
        gt=0,
        description="Dirichlet concentration for partition='dirichlet'; smaller is more skewed.",
    )
    evaluation_share: float | None = Field(
        0.25,
        ge=0,
        le=1,
        description="Test items are drawn only from questions reserved for evaluation at this "
        "share, the public pool and train splits only from the others (lada.tasks.holdout); "
        "None mixes them (no guarantee that a test question is never trained on elsewhere).",
    )
    seed: int = Field(0, description="Seed for every random draw of the split.")

    @model_validator(mode="after")
    def _check_client_domains(self) -> SplitConfig:
        if self.client_domains is None:
            return self
        if self.partition != "domain":
            raise ValueError(
                f"client_domains is only used with partition='domain', not {self.partition!r}"
            )
        if len(self.client_domains) != self.n_clients:
            raise ValueError(
                f"client_domains has {len(self.client_domains)} entries "
                f"but n_clients is {self.n_clients}"
            )
        for index, domains in enumerate(self.client_domains):
            if not domains:
                raise ValueError(f"client_domains[{index}] is empty")
        return self


@dataclass(frozen=True)
class ClientSplit:
    """One client's private items: what it trains on and what it is evaluated on."""

    train: list[ReasoningItem]
    test: list[ReasoningItem]


@dataclass(frozen=True)
class FederatedSplit:
    """The server's public pool and every client's private split."""

    public_pool: list[ReasoningItem]
    clients: list[ClientSplit]


def domain_counts(items: Sequence[ReasoningItem]) -> dict[str, int]:
    """Items per domain, sorted by domain name."""
    return dict(sorted(Counter(item.domain for item in items).items()))


def split_federated(
    items: Sequence[ReasoningItem],
    *,
    n_public: int,
    n_clients: int,
    n_train: int,
    n_test: int,
    partition: Partition = "domain",
    client_domains: list[list[str]] | None = None,
    dirichlet_alpha: float = 0.5,
    evaluation_share: float | None = None,
    seed: int = 0,
) -> FederatedSplit:
    """Cut items into a public pool and `n_clients` non-IID private splits.

    Accepts the fields of `SplitConfig` as keywords (`split_federated(items,
    **config.model_dump())`). Raises ValueError naming the numbers when there are too few items
    (overall, in a client's domains, or for the Dirichlet draw) and when ids repeat.
    """
    config = SplitConfig(
        n_public=n_public,
        n_clients=n_clients,
        n_train=n_train,
        n_test=n_test,
        partition=partition,
        client_domains=client_domains,
        dirichlet_alpha=dirichlet_alpha,
        evaluation_share=evaluation_share,
        seed=seed,
    )
    pool = list(items)
    _check_unique_ids(pool)
    if config.evaluation_share is not None:
        return _split_reserved(pool, config)
    per_client = config.n_train + config.n_test
    needed = config.n_public + config.n_clients * per_client
    if needed > len(pool):
        raise ValueError(
            f"too few items: {len(pool)} given, need {needed} = {config.n_public} public + "
            f"{config.n_clients} clients x ({config.n_train} train + {config.n_test} test)"
        )
    rng = np.random.default_rng(config.seed)
    public_positions = _stratified_public(pool, config.n_public, rng)
    taken = set(public_positions)
    rest = [position for position in range(len(pool)) if position not in taken]
    if config.partition == "iid":
        client_positions = _iid(rest, config.n_clients, per_client, rng)
    elif config.partition == "domain":
        client_positions = _by_domain(pool, rest, config, per_client, rng)
    else:
        client_positions = _dirichlet(pool, rest, config, per_client)

    clients = []
    for positions in client_positions:
        order = rng.permutation(len(positions))
        shuffled = [pool[positions[index]] for index in order]
        clients.append(
            ClientSplit(train=shuffled[: config.n_train], test=shuffled[config.n_train :])
        )
    public_pool = [pool[position] for position in public_positions]
    split = FederatedSplit(public_pool=public_pool, clients=clients)
    _check_disjoint(split)
    return split


def _split_reserved(pool: list[ReasoningItem], config: SplitConfig) -> FederatedSplit:
    """Public pool and train splits from open questions, test splits from reserved ones."""
    assert config.evaluation_share is not None
    reserved = [is_reserved(item.question, config.evaluation_share) for item in pool]
    open_pool = [item for item, r in zip(pool, reserved, strict=True) if not r]
    test_pool = [item for item, r in zip(pool, reserved, strict=True) if r]
    needed = config.n_public + config.n_clients * config.n_train
    if needed > len(open_pool) or config.n_clients * config.n_test > len(test_pool):
        raise ValueError(
            f"too few items: {len(open_pool)} training questions for {needed} = "
            f"{config.n_public} public + {config.n_clients} clients x {config.n_train} train, and "
            f"{len(test_pool)} questions reserved for evaluation (share "
            f"{config.evaluation_share}) for {config.n_clients} clients x {config.n_test} test"
        )
    rng = np.random.default_rng(config.seed)
    public_positions = _stratified_public(open_pool, config.n_public, rng)
    taken = set(public_positions)
    rest = [position for position in range(len(open_pool)) if position not in taken]
    train_config = config.model_copy(update={"n_test": 0})
    if config.partition == "iid":
        train_positions = _iid(rest, config.n_clients, config.n_train, rng)
    elif config.partition == "domain":
        train_positions = _by_domain(open_pool, rest, train_config, config.n_train, rng)
    else:
        train_positions = _dirichlet(open_pool, rest, train_config, config.n_train)
    queues = {
        name: deque(positions)
        for name, positions in _positions_by_domain(test_pool, range(len(test_pool)), rng).items()
    }
    clients = []
    for client, positions in enumerate(train_positions):
        train = [open_pool[positions[index]] for index in rng.permutation(len(positions))]
        test = _matching_test(test_pool, queues, train, config.n_test, client)
        clients.append(ClientSplit(train=train, test=test))
    split = FederatedSplit(
        public_pool=[open_pool[position] for position in public_positions], clients=clients
    )
    _check_disjoint(split)
    return split


def _matching_test(
    test_pool: list[ReasoningItem],
    queues: dict[str, deque[int]],
    train: list[ReasoningItem],
    n_test: int,
    client: int,
) -> list[ReasoningItem]:
    """`n_test` reserved items in the domain proportions of the client's train split."""
    counts = Counter(item.domain for item in train)
    names = sorted(counts)
    quotas = _largest_remainder([counts[name] for name in names], n_test)
    test: list[ReasoningItem] = []
    for name, quota in zip(names, quotas, strict=True):
        queue = queues.get(name, deque())
        if len(queue) < quota:
            raise ValueError(
                f"too few questions reserved for evaluation in domain {name!r} for client "
                f"{client}: needs {quota}, {len(queue)} left; add items or lower n_test"
            )
        test.extend(test_pool[queue.popleft()] for _ in range(quota))
    return test


def _largest_remainder(sizes: list[int], total: int) -> list[int]:
    """Split `total` in proportion to `sizes` with counts that add up exactly."""
    weight = sum(sizes)
    shares = [total * size / weight for size in sizes]
    quotas = [int(share) for share in shares]
    for index in sorted(range(len(sizes)), key=lambda i: quotas[i] - shares[i])[
        : total - sum(quotas)
    ]:
        quotas[index] += 1
    return quotas


def _stratified_public(
    pool: list[ReasoningItem], n_public: int, rng: np.random.Generator
) -> list[int]:
    """Positions of a public pool drawn from every domain in proportion to its size.

    Largest-remainder rounding; a domain whose share rounds to zero still gets one item (taken
    from the largest quota) when the pool has room for every domain.
    """
    by_domain = _positions_by_domain(pool, range(len(pool)), rng)
    sizes = np.array([len(positions) for positions in by_domain.values()], dtype=float)
    shares = n_public * sizes / sizes.sum()
    quotas = np.floor(shares).astype(int)
    remainder_order = np.argsort(-(shares - quotas), kind="stable")
    for index in remainder_order[: n_public - int(quotas.sum())]:
        quotas[index] += 1
    if n_public >= len(sizes):
        for index in np.flatnonzero(quotas == 0):
            quotas[int(np.argmax(quotas))] -= 1
            quotas[index] = 1
    chosen: list[int] = []
    for quota, positions in zip(quotas, by_domain.values(), strict=True):
        chosen.extend(positions[:quota])
    return chosen


def _iid(
    rest: list[int], n_clients: int, per_client: int, rng: np.random.Generator
) -> list[list[int]]:
    shuffled = [rest[index] for index in rng.permutation(len(rest))]
    return [shuffled[k * per_client : (k + 1) * per_client] for k in range(n_clients)]


def _by_domain(
    pool: list[ReasoningItem],
    rest: list[int],
    config: SplitConfig,
    per_client: int,
    rng: np.random.Generator,
) -> list[list[int]]:
    """Each client draws evenly across its own domains, from queues shared by clients."""
    queues = {
        name: deque(positions) for name, positions in _positions_by_domain(pool, rest, rng).items()
    }
    domains = sorted({item.domain for item in pool})
    assignment = config.client_domains or _round_robin_domains(domains, config.n_clients)
    unknown = sorted({name for names in assignment for name in names} - set(domains))
    if unknown:
        raise ValueError(f"client_domains: unknown domain(s) {unknown}; items have {domains}")
    result = []
    for client, client_domain_names in enumerate(assignment):
        chosen: list[int] = []
        while len(chosen) < per_client:
            progressed = False
            for name in client_domain_names:
                queue = queues.get(name)
                if queue and len(chosen) < per_client:
                    chosen.append(queue.popleft())
                    progressed = True
            if not progressed:
                available = len(chosen)
                raise ValueError(
                    f"too few items for client {client}: needs {per_client} "
                    f"({config.n_train} train + {config.n_test} test) from domains "
                    f"{client_domain_names}, only {available} left after the public pool "
                    f"({config.n_public}) and earlier clients"
                )
        result.append(chosen)
    return result


def _round_robin_domains(domains: list[str], n_clients: int) -> list[list[str]]:
    """Client k gets domains k, k + n_clients, ...; with fewer domains than clients, they share."""
    if len(domains) >= n_clients:
        return [domains[client::n_clients] for client in range(n_clients)]
    return [[domains[client % len(domains)]] for client in range(n_clients)]


def _dirichlet(
    pool: list[ReasoningItem], rest: list[int], config: SplitConfig, per_client: int
) -> list[list[int]]:
    """Dirichlet skew over domains via Flower Datasets, each partition cut to `per_client`."""
    import datasets
    from flwr_datasets.partitioner import DirichletPartitioner

    table = datasets.Dataset.from_dict(
        {"domain": [pool[position].domain for position in rest], "position": rest}
    )
    partitioner = DirichletPartitioner(
        num_partitions=config.n_clients,
        partition_by="domain",
        alpha=float(config.dirichlet_alpha),
        min_partition_size=per_client,
        self_balancing=False,
        shuffle=True,
        seed=config.seed,
    )
    partitioner.dataset = table
    try:
        with warnings.catch_warnings():
            # Each unsuccessful draw warns before it retries; the final failure is raised below.
            warnings.simplefilter("ignore", UserWarning)
            partitions = [partitioner.load_partition(k) for k in range(config.n_clients)]
    except ValueError as error:
        raise ValueError(
            f"too few items for a Dirichlet split: {len(rest)} items left after the public pool "
            f"({config.n_public}) could not give each of {config.n_clients} clients "
            f"{per_client} items (alpha={config.dirichlet_alpha}); add items, lower "
            f"n_train/n_test or raise dirichlet_alpha ({error})"
        ) from None
    return [list(partition["position"][:per_client]) for partition in partitions]


def _positions_by_domain(
    pool: list[ReasoningItem], positions: Sequence[int], rng: np.random.Generator
) -> dict[str, list[int]]:
    """Shuffled positions per domain, domains in sorted order so seeds are reproducible."""
    grouped: dict[str, list[int]] = {}
    for position in positions:
        grouped.setdefault(pool[position].domain, []).append(position)
    return {
        name: [grouped[name][index] for index in rng.permutation(len(grouped[name]))]
        for name in sorted(grouped)
    }


def _check_unique_ids(pool: list[ReasoningItem]) -> None:
    repeated = [item_id for item_id, count in Counter(i.id for i in pool).items() if count > 1]
    if repeated:
        raise ValueError(f"item ids must be unique; repeated: {repeated[:5]}")


def _check_disjoint(split: FederatedSplit) -> None:
    groups = [split.public_pool] + [
        part for client in split.clients for part in (client.train, client.test)
    ]
    ids = [item.id for group in groups for item in group]
    if len(ids) != len(set(ids)):
        raise AssertionError("split_federated produced overlapping splits")
