"""Steps several hosts share: private SFT, SFT on public paths within the budget, the host's
correctness gate, writing paths on public items."""

from __future__ import annotations

from collections.abc import Sequence

from lada.hosts.parties import Party
from lada.hosts.payloads import PublicPaths
from lada.models.guards import DEFAULT_MAX_NONFINITE_SKIPS
from lada.models.training import TrainUsage, sft, sft_on_paths
from lada.tasks.answers import is_correct_final
from lada.tasks.item import ReasoningItem
from lada.tasks.prompts import gold_path, render_prompt

#: Round-log counter of sender paths the host's correctness gate replaced by gold paths.
GATE_REPLACED_COUNTER = "gate_replaced"


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
    """SFT on the party's own items (gold rationales), outside the round's budget: it runs
    `epochs` epochs, the same in every arm; logs time, loss, steps and tokens (as private)."""
    if epochs <= 0 or not items:
        return
    usage = TrainUsage()
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
            usage=usage,
        )
    party.log.spend(party.model.name, usage, private=True)
    party.log.losses[phase].extend(losses)


def paths_sft(
    party: Party,
    prompts: Sequence[str],
    paths: Sequence[str],
    *,
    steps: int,
    batch_size: int,
    seed: int,
    phase: str,
    max_nonfinite_skips: int = DEFAULT_MAX_NONFINITE_SKIPS,
) -> None:
    """SFT on given (prompt, path) pairs, e.g. another party's paths on public items, for
    exactly `steps` optimizer steps of the round's budget (none without pairs)."""
    if steps <= 0 or not prompts:
        return
    usage = TrainUsage()
    with party.log.phase(phase):
        losses = sft_on_paths(
            party.model,
            prompts,
            paths,
            steps=steps,
            batch_size=batch_size,
            seed=seed,
            desc=f"{party.name} {phase}",
            log=party.log,
            max_nonfinite_skips=max_nonfinite_skips,
            usage=usage,
        )
    party.log.spend(party.model.name, usage)
    party.log.losses[phase].extend(losses)


def gate_paths(party: Party, items: Sequence[ReasoningItem], paths: Sequence[str]) -> list[str]:
    """The host's correctness gate: each path whose final answer is wrong becomes the gold path.

    The "host + gate" arm: the host's own training with LaDa's gate and gold fallback but no
    filter and no contrastive term, which isolates what that gate adds. A path counts as right
    only with a correct `#### answer` line (as LaDa's gate reads it); replacements are counted
    in the round log (`GATE_REPLACED_COUNTER`, beside `gate_checked`).
    """
    right = [is_correct_final(path, item) for item, path in zip(items, paths, strict=True)]
    party.log.count("gate_checked", len(right))
    party.log.count(GATE_REPLACED_COUNTER, right.count(False))
    return [path if ok else gold_path(item) for item, path, ok in zip(items, paths, right)]


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
