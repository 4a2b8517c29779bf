"""Text normalisation of items for tokenizers with a small alphabet (the tiny presets).

The tiny presets read printable ASCII only (`lada.models.tokenizer`), while real data files carry
en dashes, curly quotes, `×` and non-breaking spaces. `normalize_items` rewrites every item's
question, choices, rationale and answer into a given alphabet, in three steps:

1. Unicode NFKC (after writing superscript digits as `^2` and setting a vulgar fraction after a
   digit apart, so that NFKC turns `5²` into `5^2`, not `52`, and `3½` into `3 1/2`, not `31/2`);
2. `TYPOGRAPHIC` replacements: dashes and the minus sign to `-`, curly quotes to straight ones,
   unusual spaces to a space, `×`/`·` to `*`, `÷` to `/`, `≤` to `<=`, ...; then a character
   outside the alphabet that is a decimal digit of another script becomes its ASCII digit, a
   letter with accents the bare letter (`é` -> `e`), and any other whitespace a space;
3. every character still outside the alphabet becomes `placeholder` (`"?"` by default, the
   character ASCII encoders conventionally use; `""` removes it); a lone combining accent is
   dropped.

Text already inside the alphabet is returned unchanged, so normalising twice changes nothing.
Every rewrite is counted in a `NormalizationReport`, so a run can say what it changed. An item
whose answer changes must still be judged correct on its own gold path (`lada.tasks.answers`);
`NormalizationError` is raised otherwise.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from lada.tasks.answers import is_correct_final
from lada.tasks.item import ReasoningItem
from lada.tasks.prompts import gold_path

#: Replacements after NFKC: typographic characters and their plain-text spelling.
TYPOGRAPHIC: dict[str, str] = {
    # dashes, hyphens and the minus sign
    "\u2010": "-",  # hyphen (NFKC's form of the non-breaking hyphen)
    "\u2012": "-",  # figure dash
    "\u2013": "-",  # en dash
    "\u2014": "-",  # em dash
    "\u2015": "-",  # horizontal bar
    "\u2212": "-",  # minus sign
    # quotes and primes
    "\u2018": "'",
    "\u2019": "'",
    "\u201a": "'",
    "\u201b": "'",
    "\u2032": "'",  # prime
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u201f": '"',
    "\u00ab": '"',
    "\u00bb": '"',
    # spaces NFKC keeps, line ends, and invisible characters
    "\u00a0": " ",  # non-breaking space (NFKC maps it too)
    "\u2009": " ",  # thin space (NFKC maps it too)
    "\u202f": " ",  # narrow non-breaking space (NFKC maps it too)
    "\t": " ",
    "\r\n": "\n",
    "\r": "\n",
    "\u2028": "\n",  # line separator
    "\u2029": "\n",  # paragraph separator
    "\u200b": "",  # zero-width space
    "\u200c": "",  # zero-width non-joiner
    "\u200d": "",  # zero-width joiner
    "\u2060": "",  # word joiner
    "\ufeff": "",  # byte order mark
    "\u00ad": "",  # soft hyphen
    # punctuation and arithmetic
    "\u2026": "...",  # ellipsis (NFKC maps it too)
    "\u2022": "-",  # bullet
    "\u00d7": "*",  # multiplication sign
    "\u22c5": "*",  # dot operator
    "\u00b7": "*",  # middle dot
    "\u00f7": "/",  # division sign
    "\u2044": "/",  # fraction slash (NFKC writes 1/2 for the character one half with it)
    "\u2215": "/",  # division slash
    "\u2264": "<=",
    "\u2265": ">=",
    "\u2260": "!=",
    "\u2248": "~",
}

#: Superscript digits and signs, written with `^` before NFKC would make them plain digits.
_SUPERSCRIPTS = {
    "\u00b2": "2",
    "\u00b3": "3",
    "\u00b9": "1",
    "\u2070": "0",
    **{chr(0x2070 + d): str(d) for d in range(4, 10)},
    "\u207a": "+",
    "\u207b": "-",
}
_SUPERSCRIPT_RUN = re.compile(f"[{''.join(_SUPERSCRIPTS)}]+")
# A vulgar fraction (one half, ...) right after a digit: a space keeps the mixed number readable.
_MIXED_NUMBER = re.compile(r"(\d)([\u00bc-\u00be\u2150-\u215f\u2189])")
_TYPOGRAPHIC_PATTERN = re.compile(
    "|".join(re.escape(k) for k in sorted(TYPOGRAPHIC, key=len)[::-1])
)


class NormalizationError(ValueError):
    """Normalising an item would make its own gold path read as wrong, or empty a field."""


@dataclass
class NormalizationReport:
    """What `normalize_items` changed, for the run's log and summary."""

    items: int = 0
    items_changed: int = 0
    fields_changed: int = 0
    placeholder: str = "?"
    #: Every character outside the alphabet that was rewritten, with how often it occurred.
    rewritten: Counter[str] = field(default_factory=Counter)
    #: Characters with no spelling in the alphabet, replaced by `placeholder` (or removed).
    unmapped: Counter[str] = field(default_factory=Counter)

    def describe(self, listed: int = 8) -> str:
        """One line: how many items and fields changed, and the characters most often."""
        if not self.items_changed:
            return f"text normalisation changed none of {self.items} items"
        line = (
            f"text normalisation changed {self.items_changed} of {self.items} items "
            f"({self.fields_changed} fields, {sum(self.rewritten.values())} characters): "
            + _listing(self.rewritten, listed)
        )
        if self.unmapped:
            what = f"by {self.placeholder!r}" if self.placeholder else "by nothing (removed)"
            line += (
                f"; {sum(self.unmapped.values())} characters with no plain form replaced "
                f"{what}: {_listing(self.unmapped, listed)}"
            )
        return line

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "items_changed": self.items_changed,
            "fields_changed": self.fields_changed,
            "placeholder": self.placeholder,
            "rewritten": dict(self.rewritten.most_common()),
            "unmapped": dict(self.unmapped.most_common()),
        }


def _listing(counts: Counter[str], listed: int) -> str:
    shown = ", ".join(f"{char!r} x{n}" for char, n in counts.most_common(listed))
    more = len(counts) - listed
    return shown + (f" and {more} more" if more > 0 else "")


def normalize_text(
    text: str,
    alphabet: Iterable[str],
    placeholder: str = "?",
    unmapped: Counter[str] | None = None,
) -> str:
    """`text` rewritten into `alphabet` (NFKC, `TYPOGRAPHIC`, bare letters, `placeholder`).

    Characters that end as `placeholder` are counted into `unmapped` when it is given.
    """
    allowed = alphabet if isinstance(alphabet, frozenset) else frozenset(alphabet)
    _check_placeholder(placeholder, allowed)
    if allowed.issuperset(text):
        return text
    text = _SUPERSCRIPT_RUN.sub(lambda m: "^" + "".join(_SUPERSCRIPTS[c] for c in m[0]), text)
    text = _MIXED_NUMBER.sub(r"\1 \2", text)
    text = unicodedata.normalize("NFKC", text)
    text = _TYPOGRAPHIC_PATTERN.sub(lambda m: TYPOGRAPHIC[m[0]], text)
    out: list[str] = []
    for char in text:
        if char in allowed:
            out.append(char)
            continue
        digit = unicodedata.decimal(char, None)
        bare = str(digit) if digit is not None else _bare_letter(char)
        if bare and allowed.issuperset(bare):
            out.append(bare)
        elif unicodedata.combining(char):
            continue  # an accent NFKC could not join to its letter
        elif char.isspace() and " " in allowed:
            out.append(" ")
        else:
            out.append(placeholder)
            if unmapped is not None:
                unmapped[char] += 1
    return "".join(out)


def _bare_letter(char: str) -> str:
    """A letter without its accents (`é` -> `e`), or "" when that leaves nothing."""
    decomposed = unicodedata.normalize("NFKD", char)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _check_placeholder(placeholder: str, allowed: frozenset[str]) -> None:
    if len(placeholder) > 1 or (placeholder and placeholder not in allowed):
        raise ValueError(
            f"placeholder: {placeholder!r} must be one character of the alphabet, or empty"
        )


def normalize_item(
    item: ReasoningItem,
    alphabet: Iterable[str],
    placeholder: str = "?",
    report: NormalizationReport | None = None,
) -> ReasoningItem:
    """The item with question, choices, rationale and answer normalised (`normalize_text`).

    Returns `item` itself when nothing changes. Raises `NormalizationError` when the answer
    changes and the item's own gold path, correct before, would no longer be judged correct,
    or when a required field ends up empty.
    """
    allowed = frozenset(alphabet)
    unmapped: Counter[str] = Counter()
    fields: dict[str, Any] = {}
    changed = 0
    for name in ("question", "rationale", "answer"):
        before = str(getattr(item, name))
        after = normalize_text(before, allowed, placeholder, unmapped)
        if after != before:
            fields[name] = after
            changed += 1
            _count_rewritten(before, allowed, report)
    choices = []
    for choice in item.choices:
        after = normalize_text(choice, allowed, placeholder, unmapped)
        if after != choice:
            changed += 1
            _count_rewritten(choice, allowed, report)
        choices.append(after)
    if tuple(choices) != item.choices:
        fields["choices"] = tuple(choices)
    if report is not None:
        report.items += 1
        report.items_changed += bool(changed)
        report.fields_changed += changed
        report.unmapped.update(unmapped)
    if not fields:
        return item
    try:
        normalised = replace(item, **fields)
    except ValueError as err:  # the item's own checks: an empty question or answer
        raise NormalizationError(f"item {item.id!r}: after text normalisation, {err}") from None
    if "answer" in fields or "choices" in fields:
        if is_correct_final(gold_path(item), item) and not is_correct_final(
            gold_path(normalised), normalised
        ):
            raise NormalizationError(
                f"item {item.id!r}: text normalisation turns the answer {item.answer!r} into "
                f"{normalised.answer!r}, which its own gold path no longer states; clean the "
                "item's text, or turn normalisation off for a model that reads it"
            )
    return normalised


def _count_rewritten(
    text: str, allowed: frozenset[str], report: NormalizationReport | None
) -> None:
    if report is not None:
        report.rewritten.update(c for c in text if c not in allowed)


def normalize_items(
    items: Sequence[ReasoningItem], alphabet: Iterable[str], placeholder: str = "?"
) -> tuple[list[ReasoningItem], NormalizationReport]:
    """Every item normalised (`normalize_item`), and the report of what changed."""
    allowed = frozenset(alphabet)
    _check_placeholder(placeholder, allowed)
    report = NormalizationReport(placeholder=placeholder)
    return [normalize_item(item, allowed, placeholder, report) for item in items], report
