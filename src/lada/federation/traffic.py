"""What crossed the wire in a round: bytes per message kind, and an audit of every string sent.

The audit (`PayloadAudit`) keeps every string of every payload a runtime carried, and `leaks`
finds those that carry a private item's text (`PrivateTexts`): its question, its rationale or
gold path, or its id, compared after `normalise` (case and whitespace), as a whole or, for a
longer rationale or path, by any `WINDOW_CHARS` characters of it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from lada.hosts.payloads import Payload
from lada.tasks.item import ReasoningItem
from lada.tasks.prompts import gold_path


@dataclass
class Traffic:
    """Bytes and message counts per (exchange, direction, payload kind) for one round.

    Bytes are those of the serialized Flower records (`lada.federation.records.record_nbytes`),
    counted the same way by every runtime.
    """

    bytes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    messages: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    #: Clients that did not answer a step, per exchange (the step went on without them).
    lost: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))

    def add(self, exchange: str, direction: str, kind: str, size: int) -> None:
        key = f"{exchange}/{direction}/{kind}"
        self.bytes[key] += size
        self.messages[key] += 1

    def total(self) -> int:
        return sum(self.bytes.values())

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "bytes": dict(self.bytes),
            "messages": dict(self.messages),
            "total_bytes": self.total(),
        }
        if self.lost:
            out["lost_clients"] = {k: sorted(v) for k, v in self.lost.items()}
        return out


#: Length, in characters of normalised text, of the windows that `PayloadAudit.leaks` looks for:
#: a crossed string that shares any window this long with a private rationale or gold path leaks
#: it. Forty characters is two or three steps of a one-digit computation, longer than the
#: answer line, a formula or a phrase that paths on similar public questions share.
WINDOW_CHARS = 40
#: A private rationale or gold path shorter than `WINDOW_CHARS` counts as a whole (a crossed
#: string leaks it by containing all of it, on word boundaries) from this length on. A shorter one
#: (`#### 4`, `2 + 7 = 9 #### 9`) says little beyond its question, and the same characters are
#: what any path on a neighbouring public question may write; its question is still guarded.
PASSAGE_MIN_CHARS = 24
#: A private question counts wherever it occurs (on word boundaries) from this length on, unless
#: a public text holds it (private `8 + 1 - 4 = ?` is inside public `3 - 8 + 1 - 4 = ?`). A
#: shorter one (`gcd(24, 20)`, which a public path may compute on its way) still leaks as a
#: whole string or as a prompt (`Q: <question>`), as does any question.
QUESTION_MIN_CHARS = 12


def normalise(text: str) -> str:
    """Case folded, runs of whitespace as one space, no leading or trailing space: the form in
    which the audit compares texts, so that re-spacing or re-casing a private text hides nothing.
    """
    return " ".join(text.split()).casefold()


def _bounded(text: str, start: int, end: int) -> bool:
    """Whether `text[start:end]` is not part of a longer word or number."""
    return (start == 0 or not text[start - 1].isalnum()) and (
        end == len(text) or not text[end].isalnum()
    )


def _windows(text: str, size: int) -> Iterator[str]:
    for start in range(len(text) - size + 1):
        yield text[start : start + size]


@dataclass(frozen=True)
class PrivateTexts:
    """What must never cross a party boundary, and the public texts that may.

    `questions`, `passages` (rationales and gold paths) and `ids` are the private items' texts;
    `public` the public pool's. A private text the public pool also holds, or a window of one
    that a public text also holds, is no evidence of a leak and is left out of the search.
    """

    questions: frozenset[str] = frozenset()
    passages: frozenset[str] = frozenset()
    ids: frozenset[str] = frozenset()
    public: frozenset[str] = frozenset()

    @classmethod
    def from_items(
        cls, private: Iterable[ReasoningItem], public: Iterable[ReasoningItem] = ()
    ) -> PrivateTexts:
        """The question, rationale, gold path (rationale and answer line) and id of every
        private item, against the same texts of the public items."""
        private, public = list(private), list(public)
        return cls(
            questions=frozenset(it.question for it in private),
            passages=frozenset(t for it in private for t in (it.rationale, gold_path(it))),
            ids=frozenset(it.id for it in private),
            public=frozenset(
                t for it in public for t in (it.id, it.question, it.rationale, gold_path(it))
            ),
        )


class Leak(NamedTuple):
    """A crossed string that carries a private text.

    The first three fields are the audit record (exchange/direction, payload kind, the string as
    sent). `rule` says how it matched: "equal" (the string is a private text), "question" (it
    holds a private question, bare or as a prompt), "passage" (it holds a short private rationale
    or gold path whole) or "window" (it shares `WINDOW_CHARS` characters with a longer one).
    `private` is the private text it matched, normalised.
    """

    where: str
    kind: str
    text: str
    rule: str
    private: str


class _Detector:
    """The private texts indexed for scanning many crossed strings.

    Whole texts to find on word boundaries ("needles") are indexed by their first `anchor`
    characters and windows of longer passages sit in a dict, so one crossed string costs two
    passes over its windows, however many private texts there are.
    """

    def __init__(self, texts: PrivateTexts, window_chars: int) -> None:
        self.size = window_chars
        public = {normalise(t) for t in texts.public if t.strip()}
        self.equal: dict[str, tuple[str, str]] = {}
        needles: dict[str, tuple[str, str]] = {}
        guarded: set[str] = set()  # needles that give way to public texts containing them
        for raw in texts.ids:
            text = normalise(raw)
            if text and text not in public:
                self.equal[text] = ("equal", text)
        for raw in texts.questions:
            text = normalise(raw)
            if not text or text in public:
                continue
            self.equal[text] = ("equal", text)
            needles[f"q: {text}"] = ("question", text)
            if len(text) >= QUESTION_MIN_CHARS:
                needles[text] = ("question", text)
                guarded.add(text)
        self.windows: dict[str, str] = {}  # window -> the longest passage that holds it
        for text in sorted({normalise(t) for t in texts.passages}, key=lambda t: (-len(t), t)):
            if len(text) >= window_chars:
                for window in _windows(text, window_chars):
                    self.windows.setdefault(window, text)
            elif len(text) >= PASSAGE_MIN_CHARS and text not in public:
                needles.setdefault(text, ("passage", text))
                guarded.add(text)
        for text in public:
            for window in _windows(text, window_chars):
                self.windows.pop(window, None)
        self._index(needles)
        for text in public:
            for needle in self._needles_in(text):
                if needle in guarded:
                    needles.pop(needle, None)
        self._index(needles)

    def _index(self, needles: dict[str, tuple[str, str]]) -> None:
        self.needles = needles
        self.anchor = min(map(len, needles), default=0)
        self.by_anchor: dict[str, list[str]] = defaultdict(list)
        for needle in sorted(needles, key=lambda t: (-len(t), t)):  # the longest match first
            self.by_anchor[needle[: self.anchor]].append(needle)

    def _needles_in(self, text: str) -> Iterator[str]:
        if not self.anchor:
            return
        for start in range(len(text) - self.anchor + 1):
            for needle in self.by_anchor.get(text[start : start + self.anchor], ()):
                if text.startswith(needle, start) and _bounded(text, start, start + len(needle)):
                    yield needle

    def find(self, raw: str) -> tuple[str, str] | None:
        """How `raw` carries a private text, as (rule, private text), or None."""
        text = normalise(raw)
        if text in self.equal:
            return self.equal[text]
        for needle in self._needles_in(text):
            return self.needles[needle]
        if self.windows:
            for window in _windows(text, self.size):
                if window in self.windows:
                    return "window", self.windows[window]
        return None


class PayloadAudit:
    """Records every string that crosses a party boundary (for the privacy check).

    A record is (exchange/direction, payload kind, string), e.g. ("train/up", "public_paths",
    " 3 + 4 = 7\\n#### 7\\n"); every runtime records a payload's `strings()` as it crosses.
    """

    def __init__(self) -> None:
        self.records: list[tuple[str, str, str]] = []  # (exchange/direction, kind, string)

    def record(self, where: str, payload: Payload) -> None:
        self.record_strings(where, payload.kind, payload.strings())

    def record_strings(self, where: str, kind: str, texts: Iterable[str]) -> None:
        """Record strings that crossed outside a well-formed payload (a rejected reply)."""
        for text in texts:
            self.records.append((where, kind, text))

    def leaks(
        self, private: PrivateTexts | Iterable[str], *, window_chars: int = WINDOW_CHARS
    ) -> list[Leak]:
        """Records that carry a private text, each once, in the order they crossed.

        After `normalise`, a string leaks when it
        - equals a private question or id;
        - holds a private question as a prompt (`q: <question>`), or bare when the question has at
          least `QUESTION_MIN_CHARS` characters and no public text holds it;
        - holds a private rationale or gold path of `PASSAGE_MIN_CHARS` to `window_chars`
          characters whole (no public text holding it), or shares a `window_chars`-character
          window with a longer one (no public text holding that window).
        Whole texts match on word boundaries only (`2 + 7 = 9` is not in `12 + 7 = 9`).

        `private` is a `PrivateTexts` (see `PrivateTexts.from_items`) or, as before, a plain
        collection of strings, each then searched as a question, a passage and an id alike, with
        no public texts to set against.
        """
        if not isinstance(private, PrivateTexts):
            texts = frozenset(t for t in private if t)
            private = PrivateTexts(questions=texts, passages=texts, ids=texts)
        detector = _Detector(private, window_chars)
        found: dict[str, tuple[str, str] | None] = {}
        out: list[Leak] = []
        for where, kind, text in self.records:
            if text not in found:
                found[text] = detector.find(text)
            match = found[text]
            if match is not None:
                out.append(Leak(where, kind, text, *match))
        return out


#: File of a run folder that holds the audit of a run whose server ran in another process.
AUDIT_FILE = "audit.jsonl"


def write_audit(run_dir: Path, audit: PayloadAudit) -> Path:
    """The audit's records, one JSON list [where, kind, string] a line, in the order they
    crossed."""
    path = run_dir / AUDIT_FILE
    path.write_text("".join(json.dumps(list(r)) + "\n" for r in audit.records))
    return path


def read_audit(run_dir: Path) -> PayloadAudit:
    """The audit `write_audit` wrote; a `FileNotFoundError` names the file when it is absent."""
    path = run_dir / AUDIT_FILE
    audit = PayloadAudit()
    for line in path.read_text().splitlines():
        where, kind, text = json.loads(line)
        audit.records.append((where, kind, text))
    return audit
