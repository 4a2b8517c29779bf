"""Questions reserved for evaluation: one public rule that keeps test questions out of training.

The offline suite draws items from small procedural question spaces (two-term gcd up to 50 has a
few thousand questions), so two independent draws overlap heavily: a teacher pretrained on one
seed and tested on another would be tested on questions it trained on. Instead of de-duplicating
every pair of datasets, each question gets a fixed bucket in [0, 1) from a hash of its text. A
question whose bucket is below the *evaluation share* is reserved for evaluation: test splits
take only reserved questions, and everything any party trains on (pretraining, the public pool,
client train splits, items a host generates) takes only the others. The rule needs no private
data, so a server can apply it to what it generates without seeing any client's test split, and
it holds across seeds, configs and the shipped pretrained weights.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

#: Share of every question space reserved for evaluation, unless a config says otherwise. The
#: shipped pretrained weights exclude this share, so experiment configs may use it or less.
DEFAULT_EVALUATION_SHARE = 0.25


def normalize_question(question: str) -> str:
    """Whitespace-insensitive form of a question (so ' 3 + 4 = ?' and '3 + 4 = ?' are one)."""
    return " ".join(question.split())


def evaluation_bucket(question: str) -> float:
    """A question's fixed position in [0, 1), independent of seeds and Python's hash salt."""
    digest = hashlib.sha256(f"lada-eval:{normalize_question(question)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def is_reserved(question: str, share: float) -> bool:
    """Whether `question` is reserved for evaluation at this share (0 reserves nothing)."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"evaluation_share: must be in [0, 1], got {share}")
    return evaluation_bucket(question) < share


def reserved_overlap(train_questions: Iterable[str], share: float) -> list[str]:
    """The questions of a training set that are reserved for evaluation (should be none)."""
    return [q for q in train_questions if is_reserved(q, share)]
