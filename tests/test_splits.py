"""Public pool and non-IID client splits: sizes, disjointness, determinism, skew, errors."""

from __future__ import annotations

import pydantic
import pytest

from lada.tasks.item import ReasoningItem
from lada.tasks.splits import (
    FederatedSplit,
    SplitConfig,
    domain_counts,
    split_federated,
)

DOMAINS = ("algebra", "geometry", "logic", "words")
SIZES = {"n_public": 20, "n_clients": 3, "n_train": 16, "n_test": 8}


def _items(per_domain: int = 60, domains: tuple[str, ...] = DOMAINS) -> list[ReasoningItem]:
    return [
        ReasoningItem(f"{domain}:{index}", domain, f"question {index}", "1", "numeric")
        for domain in domains
        for index in range(per_domain)
    ]


def _ids(split: FederatedSplit) -> list[list[str]]:
    groups = [split.public_pool] + [
        part for client in split.clients for part in (client.train, client.test)
    ]
    return [[item.id for item in group] for group in groups]


def _max_domain_share(split: FederatedSplit) -> float:
    """Mean over clients of the share of the client's largest domain (1.0 = single domain)."""
    shares = []
    for client in split.clients:
        counts = domain_counts(client.train + client.test)
        shares.append(max(counts.values()) / sum(counts.values()))
    return sum(shares) / len(shares)


@pytest.mark.parametrize("partition", ["domain", "dirichlet", "iid"])
def test_sizes_disjoint_and_deterministic(partition: str) -> None:
    items = _items()
    split = split_federated(items, partition=partition, seed=3, **SIZES)  # type: ignore[arg-type]
    groups = _ids(split)
    flat = [item_id for group in groups for item_id in group]
    assert len(flat) == len(set(flat))
    assert set(flat) <= {item.id for item in items}
    assert len(split.public_pool) == SIZES["n_public"]
    assert len(split.clients) == SIZES["n_clients"]
    for client in split.clients:
        assert (len(client.train), len(client.test)) == (SIZES["n_train"], SIZES["n_test"])
    again = split_federated(items, partition=partition, seed=3, **SIZES)  # type: ignore[arg-type]
    assert _ids(again) == groups
    other = split_federated(items, partition=partition, seed=4, **SIZES)  # type: ignore[arg-type]
    assert _ids(other) != groups


def test_public_pool_is_stratified_over_all_domains() -> None:
    items = _items(per_domain=30) + _items(per_domain=90, domains=("big",))
    split = split_federated(items, partition="iid", seed=0, **SIZES)
    counts = domain_counts(split.public_pool)
    assert set(counts) == {*DOMAINS, "big"}
    # Proportional to domain size, up to rounding.
    sizes = domain_counts(items)
    for domain, count in counts.items():
        assert abs(count - SIZES["n_public"] * sizes[domain] / len(items)) < 1
    assert counts["big"] > counts["algebra"]


def test_domain_partition_round_robin_keeps_clients_in_their_domains() -> None:
    split = split_federated(_items(), partition="domain", seed=0, **SIZES)
    sorted_domains = sorted(DOMAINS)
    for index, client in enumerate(split.clients):
        own = set(sorted_domains[index :: SIZES["n_clients"]])
        assert set(domain_counts(client.train + client.test)) == own
    # Client 0 has two domains and draws evenly from both.
    first = domain_counts(split.clients[0].train + split.clients[0].test)
    assert max(first.values()) - min(first.values()) <= 1


def test_domain_partition_with_given_domains_and_shared_domains() -> None:
    client_domains = [["logic"], ["logic"], ["words", "algebra"]]
    split = split_federated(
        _items(), partition="domain", client_domains=client_domains, seed=1, **SIZES
    )
    for names, client in zip(client_domains, split.clients, strict=True):
        assert set(domain_counts(client.train + client.test)) == set(names)
    with pytest.raises(ValueError, match=r"unknown domain\(s\) \['poetry'\]"):
        split_federated(
            _items(),
            partition="domain",
            client_domains=[["poetry"], ["logic"], ["words"]],
            **SIZES,
        )


def test_dirichlet_skews_domain_mixes_more_than_iid() -> None:
    items = _items(per_domain=90)
    sizes = {**SIZES, "n_train": 20, "n_test": 10}
    iid = split_federated(items, partition="iid", seed=5, **sizes)
    skewed = split_federated(items, partition="dirichlet", dirichlet_alpha=0.1, seed=5, **sizes)
    mild = split_federated(items, partition="dirichlet", dirichlet_alpha=100.0, seed=5, **sizes)
    assert _max_domain_share(skewed) > _max_domain_share(iid) + 0.2
    assert _max_domain_share(skewed) > _max_domain_share(mild) + 0.2
    mixes = [domain_counts(client.train + client.test) for client in skewed.clients]
    assert len({tuple(sorted(mix.items())) for mix in mixes}) == len(mixes)


def test_too_few_items_errors_name_the_numbers() -> None:
    with pytest.raises(ValueError) as caught:
        split_federated(_items(per_domain=10), partition="iid", **SIZES)
    assert str(caught.value) == (
        "too few items: 40 given, need 92 = 20 public + 3 clients x (16 train + 8 test)"
    )
    with pytest.raises(ValueError, match="too few items for client 1: needs 24"):
        split_federated(
            _items(per_domain=60) + _items(per_domain=10, domains=("tiny",)),
            partition="domain",
            client_domains=[["logic"], ["tiny"], ["words"]],
            **SIZES,
        )
    with pytest.raises(ValueError, match="too few items for a Dirichlet split: 72 items left"):
        split_federated(_items(per_domain=23), partition="dirichlet", **SIZES)


def test_repeated_ids_are_rejected() -> None:
    items = _items()
    with pytest.raises(ValueError, match="repeated"):
        split_federated(items + items[:1], partition="iid", **SIZES)


def test_split_config_validates_and_feeds_split_federated() -> None:
    config = SplitConfig(**SIZES, partition="iid", seed=2, evaluation_share=None)
    direct = split_federated(_items(), **SIZES, partition="iid", seed=2)
    assert _ids(split_federated(_items(), **config.model_dump())) == _ids(direct)
    with pytest.raises(pydantic.ValidationError, match="client_domains has 1 entries"):
        SplitConfig(**SIZES, client_domains=[["logic"]])
    with pytest.raises(pydantic.ValidationError, match="only used with partition='domain'"):
        SplitConfig(**SIZES, partition="iid", client_domains=[["a"], ["b"], ["c"]])
    with pytest.raises(pydantic.ValidationError):
        SplitConfig(dirichlet_alpha=0)
    with pytest.raises(pydantic.ValidationError):
        SplitConfig(n_train=0)
    with pytest.raises(pydantic.ValidationError):
        SplitConfig(partition="random")  # type: ignore[arg-type]
