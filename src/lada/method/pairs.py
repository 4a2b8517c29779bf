"""Positive/negative path pairs for contrastive distillation, with the correctness gate.

The paper prefers paths by role: the sender's path is the positive, the receiver's own path the
negative. A role does not certify correct reasoning, and public items carry gold answers, so with
`correctness_gate` on (the default) a path serves as positive only when its final answer is
correct. "Correct" is read strictly by default (`is_correct_final`): the answer on the path's
`#### <answer>` line, with none of the evaluation's fallbacks, so a path that never writes its
answer line (e.g. one that only repeats the question, ending in the right number) is no positive.
The cases, each counted in a `PairReport`:

- sender_correct: the sender's path is correct: positive = sender's, negative = receiver's.
- receiver_swapped: the sender's path is wrong but the receiver's own is correct (and
  `receiver_positive_fallback` is on): positive = receiver's, negative = sender's. This keeps a
  correct-versus-wrong contrast built from real model paths, so the receiver still learns to
  prefer its own correct reasoning over the sender's mistake instead of being pushed away from it.
- gold_fallback: no correct model path and `no_positive='gold'`: positive = the gold path,
  negative = the receiver's path (or the sender's, when the receiver's is the correct one).
- skipped: no correct model path and `no_positive='skip'`: the item is not trained on.
- ungated: gate off (the paper's setting): positive = sender's, negative = receiver's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from lada.method.config import LadaConfig
from lada.tasks.answers import is_correct_final
from lada.tasks.item import ReasoningItem
from lada.tasks.prompts import gold_path, render_prompt

PositiveSource = Literal["sender", "receiver", "gold"]
CorrectnessCheck = Callable[[str, ReasoningItem], bool]


@dataclass(frozen=True)
class DistillPair:
    """One training example of contrastive distillation."""

    item: ReasoningItem
    prompt: str
    positive: str
    negative: str
    positive_source: PositiveSource


@dataclass
class PairReport:
    """How many items fell into each case of the correctness gate."""

    sender_correct: int = 0
    receiver_swapped: int = 0
    gold_fallback: int = 0
    skipped: int = 0
    ungated: int = 0

    @property
    def n_pairs(self) -> int:
        return self.sender_correct + self.receiver_swapped + self.gold_fallback + self.ungated

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "n_pairs": self.n_pairs}


def build_pairs(
    items: Sequence[ReasoningItem],
    sender_paths: Sequence[str],
    receiver_paths: Sequence[str],
    config: LadaConfig,
    *,
    check: CorrectnessCheck = is_correct_final,
) -> tuple[list[DistillPair], list[int], PairReport]:
    """Pairs for the items that get one, their positions in `items`, and the case counts.

    `check` decides whether a path may be a positive; the default reads only the final-answer
    line (`lada.tasks.answers.is_correct_final`).
    """
    if not len(items) == len(sender_paths) == len(receiver_paths):
        raise ValueError(
            f"pairs: {len(items)} items, {len(sender_paths)} sender paths, "
            f"{len(receiver_paths)} receiver paths; expected equal lengths"
        )
    pairs: list[DistillPair] = []
    kept: list[int] = []
    report = PairReport()
    for index, (item, sender, receiver) in enumerate(
        zip(items, sender_paths, receiver_paths, strict=True)
    ):
        pair = _pair_for(item, sender, receiver, config, check, report)
        if pair is not None:
            pairs.append(pair)
            kept.append(index)
    return pairs, kept, report


def _pair_for(
    item: ReasoningItem,
    sender: str,
    receiver: str,
    config: LadaConfig,
    check: CorrectnessCheck,
    report: PairReport,
) -> DistillPair | None:
    prompt = render_prompt(item)
    if not config.correctness_gate:
        report.ungated += 1
        return DistillPair(item, prompt, sender, receiver, "sender")
    if check(sender, item):
        report.sender_correct += 1
        return DistillPair(item, prompt, sender, receiver, "sender")
    receiver_ok = check(receiver, item)
    if receiver_ok and config.receiver_positive_fallback:
        report.receiver_swapped += 1
        return DistillPair(item, prompt, receiver, sender, "receiver")
    if config.no_positive == "skip":
        report.skipped += 1
        return None
    report.gold_fallback += 1
    negative = sender if receiver_ok else receiver
    return DistillPair(item, prompt, gold_path(item), negative, "gold")
