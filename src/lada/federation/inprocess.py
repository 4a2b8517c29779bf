"""The in-process runtime: calls a host's step functions directly, for quick runs and tests.

Every payload still goes through the wire codec (split into arrays and config values, rebuilt
on the other side), so a step can only use what it was sent, bytes are counted the same way for
every runtime, and the privacy audit sees exactly what crossed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from lada.hosts.base import ClientParty, Host, ServerParty
from lada.hosts.payloads import Payload, decode


@dataclass
class Traffic:
    """Bytes and message counts per (exchange, direction, payload kind) for one round."""

    bytes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    messages: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, exchange: str, direction: str, payload: Payload, size: int) -> None:
        key = f"{exchange}/{direction}/{payload.kind}"
        self.bytes[key] += size
        self.messages[key] += 1

    def total(self) -> int:
        return sum(self.bytes.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "bytes": dict(self.bytes),
            "messages": dict(self.messages),
            "total_bytes": self.total(),
        }


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


def transport(payload: Payload) -> tuple[Payload, int]:
    """Send a payload over the codec: what arrives is rebuilt from arrays and config only."""
    arrays, config = payload.split()
    arrived = decode(payload.kind, {k: v.copy() for k, v in arrays.items()}, dict(config))
    return arrived, payload.nbytes()


class InProcessRuntime:
    """Runs a host's exchanges between one server and its clients in this process."""

    def __init__(
        self,
        host: Host,
        server: ServerParty,
        clients: list[ClientParty],
        audit: PayloadAudit | None = None,
    ) -> None:
        self.host = host
        self.server = server
        self.clients = {c.client_id: c for c in clients}
        self.audit = audit

    def _carry(self, traffic: Traffic, exchange: str, direction: str, payload: Payload) -> Payload:
        if self.audit is not None:
            self.audit.record(f"{exchange}/{direction}", payload)
        arrived, size = transport(payload)
        traffic.add(exchange, direction, payload, size)
        return arrived

    def run_exchange(self, exchange: str, round_idx: int, traffic: Traffic) -> None:
        ids = sorted(self.clients)
        outgoing = self.host.server_send(exchange, self.server, round_idx, ids)
        replies: dict[int, Payload] = {}
        for cid in ids:
            if cid not in outgoing:
                continue
            received = self._carry(traffic, exchange, "down", outgoing[cid])
            reply = self.host.client_step(exchange, self.clients[cid], received, round_idx)
            replies[cid] = self._carry(traffic, exchange, "up", reply)
        self.host.server_receive(exchange, self.server, replies, round_idx)

    def run_round(self, round_idx: int) -> Traffic:
        traffic = Traffic()
        for exchange in self.host.exchanges:
            self.run_exchange(exchange, round_idx, traffic)
        return traffic
