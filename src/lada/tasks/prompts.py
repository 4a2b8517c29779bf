"""Prompt and path format shared by every model, host and loss.

A *path* is the text a model writes after the prompt: reasoning steps, one per line, then a final
line `#### <answer>`. Keeping the answer line fixed lets one extractor read every model's output
and lets generation stop as soon as that line is complete.
"""

from __future__ import annotations

from lada.tasks.item import ReasoningItem

ANSWER_MARKER = "####"
OPTION_LETTERS = "ABCDEFGHIJ"


def render_prompt(item: ReasoningItem) -> str:
    """The question as the model sees it, ending where the path begins."""
    text = f"Q: {item.question.strip()}\n"
    if item.choices:
        options = " ".join(
            f"({OPTION_LETTERS[i]}) {choice}" for i, choice in enumerate(item.choices)
        )
        text += f"Options: {options}\n"
    return text + "A:"


def render_path(rationale: str, answer: str) -> str:
    """A path from rationale steps and a final answer: ` step\\nstep\\n#### answer\\n`."""
    steps = "\n".join(line.strip() for line in rationale.strip().splitlines() if line.strip())
    body = f" {steps}\n" if steps else " "
    return f"{body}{ANSWER_MARKER} {answer.strip()}\n"


def gold_path(item: ReasoningItem) -> str:
    """The item's gold rationale and answer rendered as a path."""
    return render_path(item.rationale, item.answer)
