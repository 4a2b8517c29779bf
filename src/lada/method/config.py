"""Every knob of LaDa in one typed, documented config.

Defaults follow the paper where it speaks (threshold 0.5, alpha 0.5, beta 1, ten filter epochs per
round) and the authors' related code for the filter networks (Adam, lr 1e-5, weight decay 1e-4,
batch 32, L1 loss, hidden size 512). Fields marked *reconstruction* fill gaps in the paper; fields
marked *extension* are additions of this project. Each is switchable so that a user can restore
the paper's choice or try another.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, model_validator

from lada.models.guards import DEFAULT_MAX_NONFINITE_SKIPS

SelectionMode = Literal["lada", "random", "exploit_only", "all", "oracle", "rho_loss"]

#: Selection modes that can take a given item count per pair and round (`match_counts`).
COUNTED_MODES: tuple[str, ...] = ("random", "oracle", "rho_loss")


class LadaConfig(BaseModel):
    """Settings of the learnability filter, the rewards and the contrastive distillation loss.

    Unknown keys and non-finite numbers (nan, inf) are refused, whatever the field's range.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # ------------------------------------------------------------------ selection
    threshold: float = Field(
        0.5,
        ge=0.0,
        lt=1.0,
        description="Select candidates whose min-max-normalised score is strictly above this.",
    )
    budget: int | None = Field(
        None,
        ge=1,
        description="Cap on items selected per round (top-n by score); None = no cap.",
    )
    selection_mode: SelectionMode = Field(
        "lada",
        description=(
            "'lada': f1 + w*f2 scores with threshold and budget; 'exploit_only': f1 alone "
            "(ablation without exploration); 'random': uniform choice (ablation without the "
            "filter; at match_counts when set, else at the budget, else at the count 'lada' "
            "would take); 'all': every candidate (filter off). Arms of the evaluation protocol "
            "(extension): 'oracle': items of the receiver's own domains at levels it can learn "
            "(its local items' (domain, difficulty) pairs, or oracle_levels); 'rho_loss': "
            "RHO-LOSS (Mindermann et al., 2022), the receiver's loss on the sender's path minus "
            "an irreducible loss, top-scored first."
        ),
    )
    match_counts: dict[str, list[NonNegativeInt]] | None = Field(
        None,
        description=(
            "Extension. Per directed pair (e.g. 'llm->slm_0'), the number of items to take in "
            "rounds 1, 2, ... (at most the candidates); with 'random', 'oracle' or 'rho_loss' "
            "they take exactly that count, so an arm can run at the counts a 'lada' run took "
            "(`lada.experiments.selections.counts_from_run`). A pair or round it lacks stops "
            "the run. None = each mode's own count."
        ),
    )
    oracle_levels: dict[str, list[int]] | None = Field(
        None,
        description=(
            "Extension. 'oracle' only: the learnable difficulty levels per domain, overriding "
            "the levels of the receiver's local items for the domains named here (domains the "
            "receiver has no local items of stay out of its oracle). None = the levels its "
            "local items have."
        ),
    )
    rho_il_epochs: int = Field(
        2,
        ge=1,
        description=(
            "Extension. 'rho_loss' only: epochs of SFT on the receiver's local items (gold "
            "paths) that turn a copy of the receiver, taken at the pair's first selection, "
            "into the irreducible-loss model."
        ),
    )
    rho_il_batch_size: int = Field(
        16, ge=1, description="Extension. 'rho_loss' only: minibatch size of that SFT."
    )
    rho_holdout_fraction: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description=(
            "Extension. 'rho_loss' only: share of the receiver's local items (a seeded random "
            "subset) the irreducible-loss model trains on. 1.0 = all: the candidates are public "
            "items, never local ones, so no candidate is in that model's training data."
        ),
    )
    exploration_weight: float = Field(
        1.0,
        ge=0.0,
        description="Weight w of the exploration network in the score f1 + w*f2.",
    )
    empty_selection: Literal["top_k", "skip", "error"] = Field(
        "top_k",
        description=(
            "Extension. What happens when candidates were offered but the filter selected none: "
            "'top_k' takes the empty_selection_k best-scored candidates (random ones when the "
            "filter gave no scores), so the pair still trains and its filter still gets rewards "
            "(an empty round teaches the filter nothing and could repeat forever); 'skip' trains "
            "nothing on this pair this round; 'error' stops the run. Each case is counted."
        ),
    )
    empty_selection_k: int = Field(
        8,
        ge=1,
        description="Items the 'top_k' empty-selection fallback takes (capped by the budget).",
    )

    # ------------------------------------------------------------------ round 1
    cluster_bootstrap: bool = Field(
        True,
        description=(
            "Round 1 (no rewards yet) selects by K-means clusters; False = uniform random "
            "choice at the budget instead."
        ),
    )
    n_clusters: int = Field(
        8,
        ge=1,
        description="K of the K-means over candidate embeddings (capped at the candidate count).",
    )
    kmeans_n_init: int = Field(
        10, ge=1, description="K-means restarts (scikit-learn n_init); fixed for determinism."
    )
    round1_strategy: Literal["nearest_clusters", "fraction_per_cluster"] = Field(
        "nearest_clusters",
        description=(
            "Reconstruction. 'nearest_clusters': whole clusters in order of distance to the "
            "receiver's local-data centroid until the budget is filled; 'fraction_per_cluster': "
            "round1_fraction of every cluster, chosen at random."
        ),
    )
    round1_fraction: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description=(
            "Round-1 share of candidates: per cluster for 'fraction_per_cluster', and overall "
            "when no budget is set (also for the random bootstrap)."
        ),
    )

    # ------------------------------------------------------------------ networks
    hidden_size: int = Field(512, ge=1, description="Width of the f1 and f2 hidden layers.")
    n_hidden_layers: int = Field(
        2, ge=1, description="Number of hidden layers of f1 and of f2 (ReLU MLPs)."
    )
    exploration_input: Literal["hidden", "gradient"] = Field(
        "hidden",
        description=(
            "Input of f2: 'hidden' = f1's last hidden layer; 'gradient' = EE-Net style, the "
            "gradient of f1's output with respect to its last hidden layer and output layer, "
            "mean-pooled to gradient_pool_size values."
        ),
    )
    gradient_pool_size: int = Field(
        256, ge=1, description="Width of the pooled f1 gradient fed to f2 ('gradient' input)."
    )
    lr: float = Field(1e-5, gt=0.0, description="Adam learning rate of f1 and f2.")
    weight_decay: float = Field(1e-4, ge=0.0, description="Adam weight decay of f1 and f2.")
    batch_size: int = Field(32, ge=1, description="Minibatch size when training f1 and f2.")
    epochs_per_round: int = Field(
        10,
        ge=1,
        description="Epochs over all (features, reward) pairs seen so far, after each round.",
    )
    loss: Literal["l1", "mse"] = Field(
        "l1", description="Regression loss of f1 and f2 ('l1' as in the authors' code)."
    )

    # ------------------------------------------------------------------ rewards
    alpha: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Reward mix: alpha*sigmoid(r_item) + (1-alpha)*sigmoid(r_batch).",
    )
    item_reward: Literal["gap", "margin", "loss_drop"] = Field(
        "gap",
        description=(
            "Per-item term r_item, min-max-normalised over the selected set. 'gap': "
            "log p_sender(path) - log p_receiver(path) at the start of the round; 'margin': the "
            "contrastive margin (pi+ - ref+) - (pi- - ref-) after the round's training; "
            "'loss_drop' (extension): decrease of the receiver's loss on the item across the "
            "round's training."
        ),
    )
    batch_reward_baseline: Literal["same_set", "previous_round"] = Field(
        "same_set",
        description=(
            "Reconstruction. B_{t-1} in r_batch: 'same_set' = the receiver's mean exp-loss on "
            "this round's selected set before this round's training; 'previous_round' = the "
            "value B measured after the previous round's training (round 1 uses 'same_set')."
        ),
    )

    # ------------------------------------------------------------------ distillation loss
    beta: float = Field(1.0, gt=0.0, description="Scale beta inside the contrastive sigmoid.")
    cd_weight: float = Field(
        1.0,
        ge=0.0,
        description="lambda in L = L_SFT + lambda*L_CD; 0 = SFT only (ablation).",
    )
    normalize_logprobs: bool = Field(
        False,
        description=(
            "Use length-normalised (per-token mean) path log-probs instead of sums in L_CD and "
            "in the 'gap' and 'margin' rewards."
        ),
    )

    # ------------------------------------------------------------------ pairs
    correctness_gate: bool = Field(
        True,
        description=(
            "A path is a positive only if its final answer is correct (False reproduces the "
            "paper: positive by role)."
        ),
    )
    receiver_positive_fallback: bool = Field(
        True,
        description=(
            "With the gate on, when the sender's path is wrong and the receiver's own path is "
            "correct, swap roles: the receiver's path becomes the positive and the sender's the "
            "negative."
        ),
    )
    no_positive: Literal["gold", "skip"] = Field(
        "gold",
        description="With the gate on and no correct model path: use the gold path, or skip.",
    )

    # ------------------------------------------------------------------ receiver inference
    negative_max_new_tokens: int | None = Field(
        None,
        ge=1,
        description=(
            "Token cap when the receiver writes its own (negative) paths. None = the host's cap "
            "on the sender's paths (`prepare(..., max_new_tokens=...)`), so both paths of a pair "
            "get the same length limit; an int overrides it."
        ),
    )
    negative_do_sample: bool = Field(
        False, description="Sample the receiver's own paths instead of greedy decoding."
    )
    negative_temperature: float = Field(
        1.0, gt=0.0, description="Sampling temperature of the receiver's own paths."
    )
    inference_batch_size: int = Field(
        32,
        ge=1,
        description="Batch size of the receiver's embedding, generation and scoring passes.",
    )

    # ------------------------------------------------------------------ guards
    max_nonfinite_skips: int = Field(
        DEFAULT_MAX_NONFINITE_SKIPS,
        ge=0,
        description=(
            "Extension. Per pair and round: distillation batches with a non-finite loss, and "
            "items with a non-finite reward, that are skipped (and counted) before the run stops "
            "with NonFiniteLossError; 0 = stop at the first."
        ),
    )

    seed: int = Field(0, ge=0, description="Seed of network init, K-means and random choices.")

    @model_validator(mode="after")
    def _selection_fields_fit_the_mode(self) -> LadaConfig:
        """Refuse settings the selection mode would silently ignore or cannot honour."""
        mode = self.selection_mode
        if self.match_counts is not None:
            if mode not in COUNTED_MODES:
                raise ValueError(
                    f"match_counts: only 'random', 'oracle' and 'rho_loss' take a given count; "
                    f"selection_mode is {mode!r}"
                )
            empty = [pair for pair in self.match_counts if not pair.strip()]
            if empty:
                raise ValueError("match_counts: pair names must not be empty")
        if self.oracle_levels is not None and mode != "oracle":
            raise ValueError(f"oracle_levels: only used by selection_mode 'oracle', not {mode!r}")
        if mode == "rho_loss" and self.match_counts is None and self.budget is None:
            raise ValueError(
                "selection_mode: 'rho_loss' takes the top-n items and needs n: set "
                "match_counts or budget"
            )
        return self
