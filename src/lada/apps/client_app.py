"""The Flower `ClientApp`: one client's side of every host step.

Who the client is and which data it holds come from the node config: `partition-id` (and
`num-partitions`) select the client's share of a generated split; `data-path` (with an optional
`data-format`) points at the organisation's own data file instead (its text normalised per
`data.normalize_text`, as any run's data). `state-dir` sets where the
client keeps its state between messages and for a resumed run (see
`lada.federation.client_state`): under the run key the server sends in the hello.

Each step runs with the client's own global generators (Python, numpy, torch), saved with its
state, so its results depend neither on which worker process runs it nor on a resume.

A malformed message is answered with an error reply naming the problem; the client process
keeps running and its state is untouched.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import torch
from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp

from lada.experiments.checkpoint import restore_rng, rng_state
from lada.experiments.config import ExperimentConfig
from lada.experiments.setup import build_client, load_split, normalize_for_models, seed_everything
from lada.federation.client_state import ClientStateStore, SavedClient
from lada.federation.protocol import (
    HELLO,
    Hello,
    all_message_types,
    identity_content,
    read_hello,
)
from lada.federation.records import from_records, record_nbytes, to_records
from lada.hosts.base import SETUP, ClientParty
from lada.hosts.payloads import PayloadError
from lada.hosts.registry import make_host
from lada.tasks.item import ReasoningItem
from lada.tasks.loaders import FileFormat, load_file

log = logging.getLogger("lada.client")
#: Error code of the reply to a malformed message (Flower reserves small numbers for its own).
MALFORMED = 4001


def client_id_of(context: Context) -> int:
    """The client's id: its `partition-id` from the node config."""
    if "partition-id" not in context.node_config:
        raise PayloadError(
            "node config: missing 'partition-id' (start the SuperNode with "
            '--node-config "partition-id=0 num-partitions=2")'
        )
    return int(context.node_config["partition-id"])


def own_data(context: Context) -> str | None:
    """The client's own data file in words (`data file PATH`), or None for a split share."""
    data_path = context.node_config.get("data-path")
    return f"data file {data_path}" if data_path else None


def own_items(
    config: ExperimentConfig, context: Context, client_id: int
) -> tuple[list[ReasoningItem], list[ReasoningItem]]:
    """This client's private train and test items: its own file, or its share of the split."""
    data_path = context.node_config.get("data-path")
    if data_path:
        fmt = str(context.node_config.get("data-format", "auto"))
        # load_file checks the format name and says which ones exist.
        loaded = load_file(str(data_path), format=cast(FileFormat, fmt)).items
        # Normalised as `data.normalize_text` says, exactly as a run's own data file would be.
        items, _ = normalize_for_models(config, loaded, f"client {client_id} {own_data(context)}")
        random.Random(config.seed + client_id).shuffle(items)
        n_test = config.data.split.n_test
        return items[n_test : n_test + config.data.split.n_train], items[:n_test]
    share = load_split(config).clients[client_id]
    return share.train, share.test


def _config(store: ClientStateStore) -> ExperimentConfig:
    text = store.recall("config")
    if text is None:
        raise PayloadError("no experiment config yet: the hello step has not reached this client")
    return ExperimentConfig.model_validate_json(text)


def _threads(config: ExperimentConfig) -> None:
    torch.set_num_threads(max(1, int(config.federation.cpus_per_client)))


@contextmanager
def own_generators(saved: SavedClient) -> Iterator[None]:
    """Run with the client's global generators; keep their new state in `saved`, and give the
    process its own back (a worker may serve several clients, or the server itself)."""
    outer = rng_state()
    restore_rng(saved.rng)
    try:
        yield
        saved.rng = rng_state()
    finally:
        restore_rng(outer)


def handle(message: Message, context: Context) -> Message:
    """Answer one message; errors become error replies, never a crash of the client."""
    try:
        return _answer(message, context)
    except PayloadError as err:
        log.warning("rejected %s: %s", message.metadata.message_type, err)
        return Message(Error(code=MALFORMED, reason=f"malformed: {err}"), reply_to=message)


def _hello(hello: Hello, context: Context, client_id: int) -> RecordDict:
    """Build the client's party (a fresh run) or re-attach to its saved state (a resumed run)."""
    # Without a run key (an older server) the state is keyed by Flower's run id: not resumable.
    store = ClientStateStore(context, client_id, hello.run_key or f"flower-{context.run_id}")
    store.remember("config", hello.config)
    if hello.resume_round is not None:
        saved = store.reattach(hello.resume_round)
        party = saved.party
        return identity_content(client_id, len(party.train), len(party.test), saved.round_idx)
    config = ExperimentConfig.model_validate_json(hello.config)
    train, test = own_items(config, context, client_id)
    outer = rng_state()
    try:
        seed_everything(config.seed * 1000 + client_id)  # the client's own generators
        party = build_client(config, client_id, train, test, own_data(context))
        store.start(SavedClient(party, rng=rng_state()))
    finally:
        restore_rng(outer)
    return identity_content(client_id, len(train), len(test))


def _answer(message: Message, context: Context) -> Message:
    client_id = client_id_of(context)
    if message.metadata.message_type == HELLO:
        return Message(_hello(read_hello(message.content), context, client_id), reply_to=message)

    store = ClientStateStore(context, client_id)
    config = _config(store)
    _threads(config)
    limit = int(config.federation.max_payload_mb * 1e6)
    size = record_nbytes(message.content)
    if size > limit:
        raise PayloadError(f"message of {size} bytes exceeds the limit of {limit} bytes")
    header, payload = from_records(message.content)
    host = make_host(config.host, config.train, config.lada_enabled, config.budget)
    if header.exchange not in (SETUP, "evaluate", *host.exchanges):
        raise PayloadError(f"unknown exchange {header.exchange!r} for host {host.name}")
    saved = store.load()
    if header.round_idx < saved.round_idx:
        raise PayloadError(
            f"a message of round {header.round_idx}, but client {client_id}'s state is already "
            f"as of round {saved.round_idx}"
        )
    keep = config.checkpoint.keep if config.checkpoint.enabled else 0
    store.close_rounds(saved, header.round_idx, keep)
    party: ClientParty = saved.party
    with own_generators(saved):
        reply = host.client_step(header.exchange, party, payload, header.round_idx)
    saved.round_idx = header.round_idx
    store.save(saved)
    return Message(to_records(reply, header.exchange, header.round_idx), reply_to=message)


def make_client_app() -> ClientApp:
    """A `ClientApp` with a handler for every host step's message type."""
    client_app = ClientApp()
    register: dict[str, Any] = {
        "train": client_app.train,
        "evaluate": client_app.evaluate,
        "query": client_app.query,
    }
    register["query"]("hello")(handle)
    for category, action in all_message_types().values():
        register[category](action)(handle)
    return client_app


app = make_client_app()
