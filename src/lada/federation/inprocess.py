"""The in-process runtime: calls a host's step functions directly, for quick runs and tests.

Every payload still goes through the wire codec (turned into the same Flower records the Flower
runtime sends, rebuilt on the other side), so a step can only use what it was sent, bytes are
counted the same way for every runtime, and the privacy audit sees exactly what crossed.
"""

from __future__ import annotations

from collections.abc import Sequence

from lada.federation.records import from_records, record_nbytes, to_records
from lada.federation.sampling import taking_part
from lada.federation.traffic import PayloadAudit, Traffic
from lada.hosts.base import ClientParty, Host, ServerParty
from lada.hosts.payloads import Payload, check_size


def transport(
    payload: Payload, exchange: str = "", round_idx: int = 0, limit_bytes: int | None = None
) -> tuple[Payload, int]:
    """Send a payload over the codec: what arrives is rebuilt from records only."""
    content = to_records(payload, exchange, round_idx)
    size = check_size(record_nbytes(content), limit_bytes, f"{exchange} {payload.kind}")
    _, arrived = from_records(content)
    return arrived, size


class InProcessRuntime:
    """Runs a host's exchanges between one server and its clients in this process."""

    def __init__(
        self,
        host: Host,
        server: ServerParty,
        clients: list[ClientParty],
        audit: PayloadAudit | None = None,
        limit_bytes: int | None = None,
    ) -> None:
        self.host = host
        self.server = server
        self.clients = {c.client_id: c for c in clients}
        self.audit = audit
        self.limit_bytes = limit_bytes

    def progress(self) -> None:
        """Nothing beyond the parties, which a resume gets back with the federation."""
        return None

    def resume(self, host: Host, server: ServerParty, progress: object, round_idx: int) -> None:
        """Nothing to restore: a resumed in-process run builds a new runtime around the
        checkpointed federation."""

    def _carry(
        self, traffic: Traffic, exchange: str, direction: str, payload: Payload, round_idx: int
    ) -> Payload:
        if self.audit is not None:
            self.audit.record(f"{exchange}/{direction}", payload)
        arrived, size = transport(payload, exchange, round_idx, self.limit_bytes)
        traffic.add(exchange, direction, payload.kind, size)
        return arrived

    def run_exchange(
        self,
        exchange: str,
        round_idx: int,
        traffic: Traffic,
        participants: Sequence[int] | None = None,
    ) -> None:
        ids = taking_part(self.clients, participants)
        outgoing = self.host.server_send(exchange, self.server, round_idx, ids)
        replies: dict[int, Payload] = {}
        for cid in ids:
            if cid not in outgoing:
                continue
            received = self._carry(traffic, exchange, "down", outgoing[cid], round_idx)
            reply = self.host.client_step(exchange, self.clients[cid], received, round_idx)
            replies[cid] = self._carry(traffic, exchange, "up", reply, round_idx)
        self.host.server_receive(exchange, self.server, replies, round_idx)
