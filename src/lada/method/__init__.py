"""LaDa itself: the learnability-aware data filter, the contrastive path loss, the plug-in.

Read in this order: `config` (every knob), `plugin` (the four hooks a host calls), `filter`
(selection and learning per directed pair), `rewards`, `contrastive`, `pairs`, then the helpers
`features`, `networks` and `selection`.
"""

from lada.method.config import LadaConfig
from lada.method.contrastive import (
    DistillBatch,
    LossParts,
    PairLogprobs,
    contrastive_loss,
    distillation_loss,
)
from lada.method.features import FeatureSpace, candidate_text
from lada.method.filter import FilterChoice, FilterFit, LearnabilityFilter
from lada.method.networks import RewardMLP
from lada.method.pairs import DistillPair, PairReport, build_pairs
from lada.method.plugin import (
    Candidate,
    DistillBatchSet,
    LadaPlugin,
    RoundRewards,
    Selection,
    pair_name,
)
from lada.method.rewards import batch_term, item_term, mix

__all__ = [
    "Candidate",
    "DistillBatch",
    "DistillBatchSet",
    "DistillPair",
    "FeatureSpace",
    "FilterChoice",
    "FilterFit",
    "LadaConfig",
    "LadaPlugin",
    "LearnabilityFilter",
    "LossParts",
    "PairLogprobs",
    "PairReport",
    "RewardMLP",
    "RoundRewards",
    "Selection",
    "batch_term",
    "build_pairs",
    "candidate_text",
    "contrastive_loss",
    "distillation_loss",
    "item_term",
    "mix",
    "pair_name",
]
