"""What crossed the wire in a round: bytes per message kind, and an audit of every string sent."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from lada.hosts.payloads import Payload


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


class PayloadAudit:
    """Records every string that crosses a party boundary (for the privacy check)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, str]] = []  # (exchange/direction, kind, string)

    def record(self, where: str, payload: Payload) -> None:
        for text in payload.strings():
            self.records.append((where, payload.kind, text))

    def leaks(self, private_texts: set[str]) -> list[tuple[str, str, str]]:
        """Records that carry a private text: equal to a private question, rationale or id, or
        holding a private question as a rendered prompt.

        Whole-string comparison, not substring search: a public path may legitimately contain a
        short computation such as `3 + 4 = 7` that a private rationale also contains.
        """
        texts = {t for t in private_texts if t}
        prompts = [f"Q: {t}\n" for t in texts]
        return [r for r in self.records if r[2] in texts or any(p in r[2] for p in prompts)]
