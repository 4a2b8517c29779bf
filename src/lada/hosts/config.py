"""Settings of each host framework, with their published defaults (see docs/method.md)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lada.tasks.holdout import DEFAULT_EVALUATION_SHARE

#: Fields that moved to the round's training budget, with what to set instead.
REMOVED_FIELDS: dict[str, str] = {
    "server_kd_epochs": "budget.server_steps and budget.client_steps (optimizer steps per "
    "round; FedCoLLM's aggregated SLM learns with budget.client_steps)",
    "client_public_epochs": "budget.client_steps (optimizer steps per round)",
    "server_public_epochs": "budget.server_steps (optimizer steps per round)",
}


def reject_removed(data: Any, removed: dict[str, str], table: str) -> Any:
    """Fail on a removed field with a message that names its replacement."""
    if isinstance(data, dict):
        for key, replacement in removed.items():
            if key in data:
                raise ValueError(f"{table}.{key}: removed; set {replacement}")
    return data


REMOVED_TRAIN_FIELDS: dict[str, str] = {
    "public_epochs": "budget.client_steps (optimizer steps per round)",
    "llm_epochs": "budget.server_steps (optimizer steps per round)",
}


class TrainConfig(BaseModel):
    """How each party trains: private SFT epochs, batch sizes, generation limits.

    Training on public items (learning from the other party) is counted in optimizer steps by
    the top-level `budget` table, not here. The hosts read these settings in every step, so
    they live with the hosts; the experiment config holds them as its `train` table.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    local_epochs: int = Field(
        1,
        ge=0,
        description="Epochs of SFT on the private split per round (outside the step budget; "
        "the same in every arm of a comparison).",
    )
    batch_size: int = Field(16, ge=1, description="Items per optimizer step.")
    max_new_tokens: int = Field(96, ge=1, description="Longest path a model may write.")
    generation_batch_size: int = Field(64, ge=1, description="Prompts per generation batch.")
    max_nonfinite_skips: int = Field(
        3,
        ge=0,
        description="Batches with a non-finite loss skipped per training call before failing.",
    )
    warmup_local_epochs: int = Field(
        2, ge=0, description="Extra epochs of private SFT before round 1 (SLMs start untrained)."
    )

    @model_validator(mode="before")
    @classmethod
    def _removed_fields(cls, data: Any) -> Any:
        return reject_removed(data, REMOVED_TRAIN_FIELDS, "train")


class _HostConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _removed_fields(cls, data: Any) -> Any:
        return reject_removed(data, REMOVED_FIELDS, "host")


class FedCoTConfig(_HostConfig):
    """FedCoT / distilling step-by-step: one-way LLM -> SLM rationale distillation."""

    name: Literal["fedcot"] = "fedcot"
    rationale_weight: float = Field(
        0.5,
        ge=0,
        le=1,
        description="alpha of the multi-task loss alpha*L_rationale + (1-alpha)*L_label.",
    )
    label_prefix: str = Field(
        "[label] ", description="Task prefix of the label task (answer only, no rationale)."
    )
    correctness_gate: bool = Field(
        False,
        description="Without LaDa: replace each LLM path whose final `#### answer` line is "
        "wrong by the item's gold path before distilling (the 'host + gate' arm, which isolates "
        "what LaDa's gate and gold fallback add). Replacements are counted in the round log.",
    )


class FedCoLLMConfig(_HostConfig):
    """FedCoLLM: LoRA SLMs averaged by FedAvg; mutual LLM <-> SLM distillation on public data."""

    name: Literal["fedcollm"] = "fedcollm"
    kd_weight: float = Field(
        1.0, ge=0, description="lambda in LM loss + lambda * KL on the public pool."
    )
    temperature: float = Field(1.0, gt=0, description="Softmax temperature of the KL term.")
    top_k: int = Field(
        32, ge=1, description="Top-k logits per position sent as the distillation target."
    )


class FedMKTConfig(_HostConfig):
    """FedMKT: heterogeneous SLMs; top-k logits on the public pool, aligned across vocabularies."""

    name: Literal["fedmkt"] = "fedmkt"
    top_k: int = Field(128, ge=1, description="Top-k token logits kept per position.")
    kd_weight: float = Field(0.9, ge=0, le=1, description="Weight of KD against the LM loss.")
    kd_loss: Literal["kl", "ce"] = Field("kl", description="Distillation loss on aligned logits.")
    temperature: float = Field(1.0, gt=0, description="Softmax temperature of the KD term.")
    target_choice: Literal["lowest_ce", "weighted"] = Field(
        "lowest_ce",
        description="Per item, distil from the target with the lowest cross-entropy on the gold "
        "path, or from a softmax(-CE)-weighted mean of the targets.",
    )
    ce_unit: Literal["token", "character"] = Field(
        "token",
        description="Unit of the cross-entropy that picks targets: per token of each model's "
        "own tokenizer (as published), or per character of the gold path (one scale for "
        "models whose tokenizers differ).",
    )
    logit_dtype: Literal["float16", "float32"] = Field(
        "float16", description="Wire type of the top-k log-probabilities (float16 halves bytes)."
    )


class CrossLMConfig(_HostConfig):
    """CrossLM: the LLM writes task items, SLMs score them, both train on the kept ones."""

    name: Literal["crosslm"] = "crosslm"
    generate_per_round: int = Field(
        120, ge=1, description="Items the LLM writes per round from public seed items."
    )
    keep_fraction: float = Field(
        0.5, gt=0, le=1, description="Share of generated items kept by the SLMs' mean score."
    )
    score: Literal["likelihood", "agreement"] = Field(
        "agreement",
        description="SLM feedback: its per-token log-likelihood of the LLM's path, or whether "
        "its own answer agrees with the LLM's.",
    )
    temperature: float = Field(0.8, gt=0, description="Sampling temperature of generation.")
    max_new_tokens: int = Field(
        128,
        ge=1,
        description="Longest item (question, then path) the LLM may write, in its tokens.",
    )
    max_prefix_words: int = Field(
        4,
        ge=0,
        description="The generation prompt is 'Q: ' plus the seed question's leading non-digit "
        "text, cut to this many words (a seed without digits still leaves a question to write).",
    )
    steer_boost: float = Field(
        1.0,
        ge=0,
        description="Added to a seed item's sampling weight (initially 1) for each of its "
        "generations the SLMs' scores kept; 0 = uniform seed sampling every round.",
    )
    reserved_share: float = Field(
        DEFAULT_EVALUATION_SHARE,
        ge=0,
        le=1,
        description="A generated item whose question is reserved for evaluation at this share "
        "(lada.tasks.holdout) is dropped, so no test question is ever trained on; must be at "
        "least data.split.evaluation_share.",
    )


HostConfig = Annotated[
    FedCoTConfig | FedCoLLMConfig | FedMKTConfig | CrossLMConfig, Field(discriminator="name")
]
HOST_NAMES = ("fedcot", "fedcollm", "fedmkt", "crosslm")
