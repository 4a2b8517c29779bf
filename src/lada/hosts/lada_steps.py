"""Where a host hands a receiving step to the LaDa plug-in.

Every host that learns from another party's paths on public items calls `receive_with_lada`
instead of its own distillation when LaDa is enabled: the receiver's filter chooses the items,
the receiver trains on them with L_SFT + lambda * L_CD, and the loss change is fed back as
rewards. The host's exchange and aggregation stay as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lada.hosts.parties import ClientParty, Party
from lada.hosts.payloads import PublicPaths
from lada.method.plugin import Candidate, pair_name
from lada.models.training import TrainUsage
from lada.tasks.item import ReasoningItem
from lada.tasks.prompts import gold_path, render_prompt

#: At most this many local items summarise the receiver's own data (round-1 centroid).
LOCAL_SUMMARY_ITEMS = 256


def _candidates(
    paths: PublicPaths, items_by_id: Mapping[str, ReasoningItem], normalize: bool
) -> list[Candidate]:
    out = []
    for k, (item_id, path) in enumerate(zip(paths.item_ids, paths.paths)):
        logprob = None
        if paths.logprobs:
            logprob = paths.logprobs[k]
            if normalize and paths.token_counts:
                logprob /= max(1, paths.token_counts[k])
        out.append(Candidate(items_by_id[item_id], path, logprob))
    return out


def receive_with_lada(
    party: Party,
    paths: PublicPaths,
    items_by_id: Mapping[str, ReasoningItem],
    local_items: Sequence[ReasoningItem],
    *,
    round_idx: int,
    train: Any,
    steps: int,
    seed: int,
) -> dict[str, Any]:
    """Select, prepare, train and observe for one directed pair; returns the selection record.

    Only a client's local items are its own data for the 'oracle' and 'rho_loss' arms: the
    server passes the public pool as `local_items`, which are the candidates themselves.
    """
    plugin = party.plugin
    if plugin is None:
        raise ValueError(f"{party.name}: receives with LaDa, but LaDa is not enabled for it")
    config = plugin.config
    pair = pair_name(paths.sender, party.model.name)
    candidates = _candidates(paths, items_by_id, config.normalize_logprobs)
    local = [render_prompt(it) + gold_path(it) for it in local_items[:LOCAL_SUMMARY_ITEMS]]
    with party.log.phase("scoring"):
        selection = plugin.select(
            party.model,
            candidates,
            pair=pair,
            local_texts_or_embedding=local or None,
            round_idx=round_idx,
            log=party.log,
            local_items=local_items if isinstance(party, ClientParty) else None,
        )
    with party.log.phase("path_generation"):
        batch_set = plugin.prepare(party.model, selection, max_new_tokens=train.max_new_tokens)
    usage = TrainUsage()  # `steps` optimizer steps of the budget, negatives' tokens included
    with party.log.phase("distillation"):
        history = plugin.fit(
            party.model,
            batch_set,
            steps=steps,
            batch_size=train.batch_size,
            seed=seed,
            log=party.log,
            usage=usage,
        )
    party.log.spend(party.model.name, usage)
    for key in ("total", "sft", "cd", "margin"):
        party.log.losses[f"lada_{key}"].extend(h[key] for h in history)
    with party.log.phase("filter_training"):
        rewards = plugin.observe(party.model, selection, batch_set, log=party.log)
    report = batch_set.report.to_dict()
    for key, value in report.items():
        party.log.count(f"pairs_{key}", value)
    party.log.count("selected", len(selection))
    party.log.count("offered", selection.n_offered)
    scores = selection.scores
    record = {
        "filter": pair,
        "mode": config.selection_mode,
        "strategy": selection.strategy,
        "n_offered": selection.n_offered,
        "item_ids": [c.item.id for c in selection.candidates],
        "scores": [] if scores is None else [float(scores[i]) for i in selection.indices],
        "score_mean_all": None if scores is None else float(np.mean(scores)),
        "pairs": report,
        "rewards": rewards.summary(),
        "selection_stats": dict(selection.stats),
    }
    party.log.selections.append(record)
    return record
