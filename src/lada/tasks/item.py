"""The one record every part of `lada` passes around: a checkable reasoning item."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

AnswerKind = Literal["numeric", "option", "yesno", "text"]
ANSWER_KINDS: tuple[str, ...] = ("numeric", "option", "yesno", "text")


@dataclass(frozen=True)
class ReasoningItem:
    """A question with a gold step-by-step rationale and a checkable final answer.

    `rationale` holds the reasoning steps only; the final answer lives in `answer` and is rendered
    as the path's last line by `lada.tasks.prompts.render_path`. `difficulty` is the generator's
    knob (digits, terms, steps) or 0 when the source does not say.
    """

    id: str
    domain: str
    question: str
    answer: str
    answer_kind: AnswerKind
    rationale: str = ""
    choices: tuple[str, ...] = ()
    difficulty: int = 0
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.answer_kind not in ANSWER_KINDS:
            raise ValueError(f"answer_kind: {self.answer_kind!r} is not one of {ANSWER_KINDS}")
        if not self.id:
            raise ValueError("id: must not be empty")
        if not self.question.strip():
            raise ValueError(f"question: empty for item {self.id!r}")
        if not str(self.answer).strip():
            raise ValueError(f"answer: empty for item {self.id!r}")
        if self.answer_kind == "option" and not self.choices:
            raise ValueError(f"choices: option answer needs choices for item {self.id!r}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["choices"] = list(self.choices)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReasoningItem:
        data = dict(data)
        data["choices"] = tuple(data.get("choices") or ())
        data.setdefault("meta", {})
        return cls(**data)
