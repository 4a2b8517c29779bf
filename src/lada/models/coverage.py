"""Whether a model's tokenizer can read the task text, checked before any training starts.

The built-in character and word tokenizers know printable ASCII only; an item with `é`, `×` or
`−` in it is silently read as `<unk>`, so the model trains on, and is scored against, text it
never saw. Hub tokenizers with an unknown token (WordPiece, SentencePiece without byte
fallback) fail the same way. `check_encodable` finds such items up front and names them, with
the characters at fault, so the data can be cleaned or the alphabet widened.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedTokenizerBase

from lada.tasks.item import ReasoningItem
from lada.tasks.prompts import gold_path, render_prompt

#: How many uncovered items an error message lists before it says "and N more".
LISTED_ITEMS = 5
#: Field name under which text of the prompt format itself (not of an item field) is reported.
PROMPT_FORMAT = "prompt format"


class CoverageError(ValueError):
    """A tokenizer cannot encode some items; `uncovered` lists them."""

    def __init__(self, message: str, uncovered: list[Uncovered]) -> None:
        super().__init__(message)
        self.uncovered = uncovered


@dataclass(frozen=True)
class Uncovered:
    """One item field the tokenizer reads (partly) as its unknown token."""

    item_id: str
    field: str
    characters: tuple[str, ...]  # the characters it cannot encode, in order of appearance

    def describe(self) -> str:
        if not self.characters:
            return f"item {self.item_id!r} {self.field}: maps to the unknown token"
        listed = ", ".join(repr(c) for c in self.characters)
        return f"item {self.item_id!r} {self.field}: {listed}"


def check_encodable(model: Any, items: Sequence[ReasoningItem], where: str) -> None:
    """Raise `CoverageError` when `model`'s tokenizer cannot encode some of `items`' text.

    `model` is a `ReasoningModel` or a tokenizer. Checked: question, choices, rationale and
    answer of every item, and the prompt format around them. `where` says which party and data
    (e.g. "client 1 train split") for the message. A tokenizer without an unknown token
    (byte-level BPE) encodes every text and always passes.
    """
    tokenizer: PreTrainedTokenizerBase = getattr(model, "tokenizer", model)
    uncovered = find_unencodable(tokenizer, items)
    if not uncovered:
        return
    name = getattr(model, "name", None) or type(tokenizer).__name__
    n_items = len({u.item_id for u in uncovered})
    shown = "; ".join(u.describe() for u in uncovered[:LISTED_ITEMS])
    more = len(uncovered) - LISTED_ITEMS
    tail = f"; and {more} more" if more > 0 else ""
    raise CoverageError(
        f"{where}: the tokenizer of {name} cannot encode {n_items} of {len(items)} items "
        f"(read as {tokenizer.unk_token!r}): {shown}{tail}. Clean the text or use a model "
        "whose tokenizer covers it.",
        uncovered,
    )


def find_unencodable(
    tokenizer: PreTrainedTokenizerBase, items: Sequence[ReasoningItem]
) -> list[Uncovered]:
    """Every (item, field) whose text the tokenizer reads as its unknown token, in item order."""
    unk = tokenizer.unk_token_id
    if unk is None:
        return []
    # A literal "<unk>" in the text is the token's own spelling, not a failure to encode.
    literal = str(tokenizer.unk_token or "")
    entries = [(i, f, t.replace(literal, " ") if literal else t) for i, f, t in _texts(items)]
    if not entries:
        return []
    encoded = tokenizer([text for _, _, text in entries], add_special_tokens=False)["input_ids"]
    unknown_chars = _UnknownCharacters(tokenizer, unk)
    found: list[Uncovered] = []
    for (item_id, field, text), ids in zip(entries, encoded, strict=True):
        if unk in ids:
            found.append(Uncovered(item_id, field, unknown_chars.of(text)))
    return _drop_format_repeats(found)


def _texts(items: Sequence[ReasoningItem]) -> Iterator[tuple[str, str, str]]:
    for item in items:
        yield item.id, "question", item.question
        for index, choice in enumerate(item.choices):
            yield item.id, f"choices[{index}]", choice
        if item.rationale:
            yield item.id, "rationale", item.rationale
        yield item.id, "answer", str(item.answer)
        yield item.id, PROMPT_FORMAT, render_prompt(item) + gold_path(item)


class _UnknownCharacters:
    """Which characters of a text the tokenizer cannot encode (cached per character)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, unk: int) -> None:
        self.tokenizer = tokenizer
        self.unk = unk
        self.known: dict[str, bool] = {}

    def of(self, text: str) -> tuple[str, ...]:
        out: list[str] = []
        for char in dict.fromkeys(text):
            if char not in self.known:
                ids = self.tokenizer(char, add_special_tokens=False)["input_ids"]
                self.known[char] = self.unk not in ids
            if not self.known[char]:
                out.append(char)
        return tuple(out)


def _drop_format_repeats(found: list[Uncovered]) -> list[Uncovered]:
    """Report the rendered prompt only for characters that no field of the item explains."""
    by_item: dict[str, set[str]] = {}
    for u in found:
        if u.field != PROMPT_FORMAT:
            by_item.setdefault(u.item_id, set()).update(u.characters)
    kept = []
    for u in found:
        if u.field == PROMPT_FORMAT:
            extra = tuple(c for c in u.characters if c not in by_item.get(u.item_id, set()))
            if not extra and u.item_id in by_item:
                continue
            u = Uncovered(u.item_id, u.field, extra)
        kept.append(u)
    return kept
