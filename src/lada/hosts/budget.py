"""The training budget: one per party per round, honoured the same way by every host.

Comparisons (a host alone, the host + LaDa, ablations) are matched on optimizer steps: every
step in which a party learns from the other party's knowledge on public items takes from the
budget, whatever the number of items it trains on. A host's own distillation (FedCoT's
multi-task loss, FedCoLLM's and FedMKT's logit KD, CrossLM's training on kept items) and LaDa's
training on its selection take the same number of steps, so LaDa's smaller selection is visited
more often instead of being trained on for fewer steps.

Private local SFT is not part of this budget: it runs `train.local_epochs` epochs over the
client's own split, identical in every arm of a comparison.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Budget(BaseModel):
    """Optimizer steps per round for learning from the other party on public items."""

    model_config = ConfigDict(extra="forbid")

    client_steps: int = Field(
        63,
        ge=0,
        description="Optimizer steps per round a client's SLM spends learning from the LLM on "
        "public items: the host's distillation, or LaDa's training on its selection. In "
        "FedCoLLM without LaDa the SLM learns on the server (the aggregated SLM), which then "
        "spends them once for all clients. Default: one pass over the default 1,000-item public "
        "pool at batch 16.",
    )
    server_steps: int = Field(
        63,
        ge=0,
        description="Optimizer steps per round the server's LLM spends learning from the "
        "clients (FedCoLLM, FedMKT, CrossLM; FedCoT never updates the LLM). With LaDa they are "
        "shared out over the clients' pairs (`share_steps`). Default as `client_steps`.",
    )


def share_steps(total: int, n_parts: int, part: int) -> int:
    """Steps part `part` of `n_parts` gets when `total` steps are shared out in order.

    Earlier parts take the remainder (10 over 3: 4, 3, 3). A caller that shares out what is
    left after each part (`total` = steps still unspent, `n_parts` = parts still to come) hands
    on the steps of a part that had nothing to train on, so the round still spends `total`.
    """
    if n_parts < 1 or not 0 <= part < n_parts:
        raise ValueError(f"share_steps: part {part} of {n_parts}")
    return total // n_parts + int(part < total % n_parts)
