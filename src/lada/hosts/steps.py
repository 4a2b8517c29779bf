"""Steps several hosts share: private SFT, writing paths on public items, token accounting."""

from __future__ import annotations

from collections.abc import Sequence

from lada.hosts.base import Party
from lada.hosts.payloads import PublicPaths
from lada.models.guards import DEFAULT_MAX_NONFINITE_SKIPS
from lada.models.training import sft, sft_on_paths
from lada.tasks.item import ReasoningItem
from lada.tasks.prompts import gold_path, render_prompt


def count_trained_tokens(
    party: Party, prompts: Sequence[str], paths: Sequence[str], epochs: int
) -> None:
    """Add the path tokens a model is about to train on to its round log (budget accounting)."""
    n = sum(party.model.path_token_counts(paths))  # end-of-sequence counted where scored
    party.log.trained_tokens[party.model.name] += n * epochs


def private_sft(
    party: Party,
    items: Sequence[ReasoningItem],
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    phase: str = "local_training",
    max_nonfinite_skips: int = DEFAULT_MAX_NONFINITE_SKIPS,
) -> None:
    """SFT on the party's own items (gold rationales); logs time, loss and tokens."""
    if epochs <= 0 or not items:
        return
    count_trained_tokens(party, [], [gold_path(it) for it in items], epochs)
    with party.log.phase(phase):
        losses = sft(
            party.model,
            items,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            desc=f"{party.name} {phase}",
            log=party.log,
            max_nonfinite_skips=max_nonfinite_skips,
        )
    party.log.losses[phase].extend(losses)


def paths_sft(
    party: Party,
    prompts: Sequence[str],
    paths: Sequence[str],
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    phase: str,
    max_nonfinite_skips: int = DEFAULT_MAX_NONFINITE_SKIPS,
) -> None:
    """SFT on given (prompt, path) pairs, e.g. another party's paths on public items."""
    if epochs <= 0 or not prompts:
        return
    count_trained_tokens(party, prompts, paths, epochs)
    with party.log.phase(phase):
        losses = sft_on_paths(
            party.model,
            prompts,
            paths,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            desc=f"{party.name} {phase}",
            log=party.log,
            max_nonfinite_skips=max_nonfinite_skips,
        )
    party.log.losses[phase].extend(losses)


def write_public_paths(
    party: Party, items: Sequence[ReasoningItem], *, max_new_tokens: int, batch_size: int
) -> PublicPaths:
    """The party's greedy paths on public items, with its own log-probs of them."""
    prompts = [render_prompt(it) for it in items]
    with party.log.phase("path_generation"):
        paths = party.model.generate_paths(
            prompts, max_new_tokens=max_new_tokens, batch_size=batch_size
        )
        logprobs = party.model.sequence_logprobs(prompts, paths, batch_size=batch_size)
    return PublicPaths(
        sender=party.model.name,
        item_ids=[it.id for it in items],
        paths=paths,
        logprobs=[float(x) for x in logprobs],
        token_counts=party.model.path_token_counts(paths),
    )
