"""The server side of the Flower runtime: a host's exchanges as Flower messages over a `Grid`.

The same `Runner` that drives the in-process runtime drives this one; only the carrying differs.
A client that does not answer a step in time (its node died, its message was malformed, its step
raised) is logged by id and left out of the rest of the run; the run goes on while at least
`federation.min_clients` clients answer, and stops with a clear error otherwise.

A resumed run (`resume`) sends each client the round it continues after; a client re-attaches
to its saved state as of that round, and one whose state ends with another round than the
checkpoint has for it is refused, by name and with both rounds (`lada.federation.progress`).

With an audit, every payload is recorded as the in-process runtime records it (down before it is
sent, up as it arrived); a reply that is rejected, and a client's error reason, crossed too and
are recorded with kind "rejected" and "error".
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid
from rich.console import Console

from lada.federation.config import FederationConfig
from lada.federation.progress import RunProgress, round_mismatch
from lada.federation.protocol import HELLO, hello_content, message_type, read_identity
from lada.federation.records import from_records, record_nbytes, to_records
from lada.federation.sampling import taking_part
from lada.federation.traffic import PayloadAudit, Traffic
from lada.hosts.base import Host, ServerParty
from lada.hosts.payloads import Payload, PayloadError


def _config_strings(content: RecordDict) -> list[str]:
    """Every string in a record dict's config records, whatever their shape (for the privacy
    audit of a reply that could not be decoded): JSON text is decoded and walked like a payload's
    fields, other text is taken as it is."""
    out: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, bytes):
            out.append(value.decode("utf-8", errors="replace"))
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v)
        elif isinstance(value, dict):
            for k, v in value.items():
                out.append(str(k))
                walk(v)

    for record in content.config_records.values():
        for value in record.values():
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    pass
            walk(value)
    return out


class FederationError(RuntimeError):
    """Too few clients answered for the run to go on."""


class FlowerRuntime:
    """Carries exchanges to the clients' nodes and back through Flower."""

    def __init__(
        self,
        grid: Grid,
        federation: FederationConfig,
        n_clients: int,
        hello: str,
        host: Host[Any],
        server: ServerParty,
        console: Console,
        audit: PayloadAudit | None = None,
    ) -> None:
        """`hello` is what each client node gets first (the experiment config, as JSON): it
        builds its party from it."""
        self.grid = grid
        self.hello = hello
        self.host = host
        self.server = server
        self.console = console
        self.audit = audit
        self.n_clients = n_clients
        self.min_clients = federation.min_clients or self.n_clients
        self.timeout = federation.round_timeout_s
        self.poll_s = federation.reply_poll_s
        self.limit_bytes = int(federation.max_payload_mb * 1e6)
        #: client id -> Flower node id, for the clients still in the run.
        self.nodes: dict[int, int] = {}
        self.run_progress = RunProgress()
        #: The round a resumed run continues after (None: a fresh run).
        self.resume_round: int | None = None

    @property
    def lost(self) -> dict[int, str]:
        return self.run_progress.lost

    # ---------------------------------------------------------------- resume
    def progress(self) -> RunProgress:
        """What a resume needs beside the parties (checkpointed with them)."""
        return self.run_progress

    def resume(
        self, host: Host[Any], server: ServerParty, progress: object, round_idx: int
    ) -> None:
        """Continue after round `round_idx`, with the parties and progress checkpointed then."""
        if not isinstance(progress, RunProgress):
            raise FederationError(
                f"the checkpoint of round {round_idx} holds no Flower run progress (run key, "
                "clients' rounds): it was not written by a Flower run"
            )
        self.host, self.server = host, server
        self.run_progress = progress
        self.resume_round = round_idx

    def _send_and_receive(self, messages: list[Message]) -> list[Message]:
        """Push `messages`, then pull their replies every `federation.reply_poll_s` seconds
        until all came or `round_timeout_s` passed (Flower's `send_and_receive` polls every
        3 s, which on small models is most of a step's time)."""
        pending = set(self.grid.push_messages(messages))
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        replies: list[Message] = []
        while pending:
            for reply in self.grid.pull_messages(pending):
                replies.append(reply)
                pending.discard(reply.metadata.reply_to_message_id)
            if not pending or (deadline is not None and time.monotonic() >= deadline):
                break
            time.sleep(self.poll_s)
        return replies

    # ----------------------------------------------------------------- hello
    def connect(self, wait_s: float) -> None:
        """Wait for the clients' nodes, send each the experiment config, learn their ids."""
        deadline = time.monotonic() + wait_s
        node_ids = sorted(self.grid.get_node_ids())
        while len(node_ids) < self.n_clients and time.monotonic() < deadline:
            time.sleep(1.0)
            node_ids = sorted(self.grid.get_node_ids())
        if len(node_ids) < self.min_clients:
            raise FederationError(
                f"only {len(node_ids)} client nodes connected within {wait_s:.0f} s; "
                f"need at least {self.min_clients} (federation.min_clients)"
            )
        content = hello_content(self.hello, self.run_progress.run_key, self.resume_round)
        messages = [Message(content=content, dst_node_id=n, message_type=HELLO) for n in node_ids]
        for reply in self._send_and_receive(messages):
            node = reply.metadata.src_node_id
            if reply.has_error():
                self.console.print(f"[yellow]node {node} failed the hello: {reply.error.reason}")
                continue
            try:
                identity = read_identity(reply.content)
            except PayloadError as err:
                self.console.print(f"[yellow]node {node}: {err}")
                continue
            cid = identity.client_id
            if cid in self.nodes or not 0 <= cid < self.n_clients:
                raise FederationError(
                    f"node {node} says it is client {cid}: ids must be distinct and in "
                    f"0..{self.n_clients - 1} (node config partition-id)"
                )
            if self.resume_round is not None:
                if cid in self.lost:  # the uninterrupted run went on without it too
                    self.console.print(f"[yellow]client {cid} stays out: {self.lost[cid]}")
                    continue
                expected = self.run_progress.answered.get(cid, -1)
                refusal = round_mismatch(cid, identity.state_round, self.resume_round, expected)
                if refusal is not None:
                    self.lost[cid] = refusal
                    self.console.print(f"[red]{refusal}")
                    continue
            self.nodes[cid] = node
        self._check_enough("hello")

    def _check_enough(self, where: str) -> None:
        if len(self.nodes) < self.min_clients:
            raise FederationError(
                f"{where}: {len(self.nodes)} of {self.n_clients} clients answered, fewer than "
                f"federation.min_clients={self.min_clients}; lost: {self.lost}"
            )

    def _lose(self, cid: int, reason: str, exchange: str, traffic: Traffic) -> None:
        self.nodes.pop(cid, None)
        self.lost[cid] = reason
        traffic.lost[exchange].append(cid)
        self.console.print(f"[yellow]lost client {cid} in {exchange}: {reason}")

    # -------------------------------------------------------------- exchange
    def _encode(self, payload: Payload, exchange: str, round_idx: int, traffic: Traffic):
        content = to_records(payload, exchange, round_idx)
        size = record_nbytes(content)
        if size > self.limit_bytes:
            raise PayloadError(
                f"{payload.kind}: {size} bytes exceeds the limit of {self.limit_bytes} bytes "
                "(federation.max_payload_mb)"
            )
        if self.audit is not None:
            self.audit.record(f"{exchange}/down", payload)
        traffic.add(exchange, "down", payload.kind, size)
        return content

    def run_exchange(
        self,
        exchange: str,
        round_idx: int,
        traffic: Traffic,
        participants: Sequence[int] | None = None,
    ) -> None:
        """`participants`: the clients taking part (None: all still in the run). A partial
        round goes on when at least `min_clients` of those asked answered (all, if fewer)."""
        ids = taking_part(self.nodes, participants)
        outgoing = self.host.server_send(exchange, self.server, round_idx, ids)
        kind = message_type(self.host.name, exchange, self.host.lada_enabled)
        messages, client_of = [], {}
        for cid in ids:
            if cid not in outgoing:
                continue
            content = self._encode(outgoing[cid], exchange, round_idx, traffic)
            message = Message(
                content=content,
                dst_node_id=self.nodes[cid],
                message_type=kind,
                group_id=str(round_idx),
            )
            messages.append(message)
            client_of[self.nodes[cid]] = cid
        replies: dict[int, Payload] = {}
        answered: set[int] = set()
        for reply in self._send_and_receive(messages):
            sender = client_of.get(reply.metadata.src_node_id)
            if sender is None:
                continue
            cid = sender
            answered.add(cid)
            if reply.has_error():
                reason = reply.error.reason or "no reason given"
                if self.audit is not None:
                    self.audit.record_strings(f"{exchange}/up", "error", [reason])
                self._lose(cid, reason, exchange, traffic)
                continue
            try:
                size = record_nbytes(reply.content)
                if size > self.limit_bytes:
                    raise PayloadError(f"reply of {size} bytes exceeds {self.limit_bytes} bytes")
                _, payload = from_records(reply.content)
            except PayloadError as err:
                if self.audit is not None:  # rejected, but it crossed all the same
                    self.audit.record_strings(
                        f"{exchange}/up", "rejected", _config_strings(reply.content)
                    )
                self._lose(cid, f"rejected reply: {err}", exchange, traffic)
                continue
            if self.audit is not None:
                self.audit.record(f"{exchange}/up", payload)
            traffic.add(exchange, "up", payload.kind, size)
            replies[cid] = payload
            self.run_progress.answered[cid] = round_idx
        for cid in sorted(set(client_of.values()) - answered):
            self._lose(cid, f"no reply within {self.timeout} s", exchange, traffic)
        self._check_enough(f"round {round_idx} {exchange}")
        asked = len(client_of)
        if participants is not None and len(replies) < min(self.min_clients, asked):
            raise FederationError(  # a partial round's own floor
                f"round {round_idx} {exchange}: {len(replies)} of the {asked} clients taking "
                f"part answered, fewer than federation.min_clients={self.min_clients}; "
                f"lost: {self.lost}"
            )
        self.host.server_receive(exchange, self.server, replies, round_idx)
