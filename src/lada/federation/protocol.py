"""Message types of the Flower runtime, and the hello step that introduces each client.

Each host step travels as a message of its own type: `query.hello` (the server sends the
experiment config, the run key under which clients keep their state, and on a resumed run the
round it continues after; the client answers with its client id and, on a resumed run, the round
of the state it re-attached to), `query.setup` (public pool),
`train.<host>_<exchange>` or `train.<host>_<exchange>_lada` when LaDa is plugged in (for example
`train.fedcot_train_lada`, `train.crosslm_generate`), and `evaluate.report`.
"""

from __future__ import annotations

from dataclasses import dataclass

from flwr.app import ConfigRecord, RecordDict

from lada.federation.records import record_int
from lada.hosts.base import EVALUATE, SETUP
from lada.hosts.payloads import PayloadError
from lada.hosts.registry import HOSTS, host_class

HELLO = "query.hello"
EXPERIMENT = "experiment"
IDENTITY = "identity"


def message_type(host: str, exchange: str, lada_enabled: bool) -> str:
    if exchange == SETUP:
        return "query.setup"
    if exchange == EVALUATE:
        return "evaluate.report"
    return f"train.{host}_{exchange}" + ("_lada" if lada_enabled else "")


def all_message_types() -> dict[str, tuple[str, str]]:
    """Every host step's message type -> (category, action), for registering client handlers."""
    types = {}
    for name in HOSTS:
        exchanges = (SETUP, EVALUATE, *host_class(name).exchanges)
        for exchange in exchanges:
            for lada in (False, True):
                full = message_type(name, exchange, lada)
                category, action = full.split(".")
                types[full] = (category, action)
    return types


@dataclass(frozen=True)
class Hello:
    """What the server tells a client first."""

    config: str  # the experiment config, as JSON
    #: Names the client's state folder: the same for every Flower run of one experiment run
    #: (empty: an older server; the client then keys its state by Flower's run id).
    run_key: str = ""
    #: On a resumed run, the last complete round: the client re-attaches to its state then.
    resume_round: int | None = None


@dataclass(frozen=True)
class Identity:
    """A client's answer to the hello."""

    client_id: int
    n_train: int = 0
    n_test: int = 0
    #: On a resumed run, the round of the last step of the state the client re-attached to.
    state_round: int | None = None


def hello_content(
    config_json: str, run_key: str = "", resume_round: int | None = None
) -> RecordDict:
    record = ConfigRecord({"config": config_json, "run_key": run_key})
    if resume_round is not None:
        record["resume_round"] = resume_round
    return RecordDict({EXPERIMENT: record})


def read_hello(content: RecordDict) -> Hello:
    record = content.config_records.get(EXPERIMENT)
    if record is None or not isinstance(record.get("config"), str):
        raise PayloadError(f"hello: missing {EXPERIMENT!r} record with a 'config' string")
    try:
        resume = record.get("resume_round")
        return Hello(
            str(record["config"]),
            str(record.get("run_key", "")),
            None if resume is None else record_int(resume),
        )
    except (TypeError, ValueError) as err:
        raise PayloadError(f"hello: malformed 'resume_round' ({err})") from err


def identity_content(
    client_id: int, n_train: int, n_test: int, state_round: int | None = None
) -> RecordDict:
    record = ConfigRecord({"client_id": client_id, "n_train": n_train, "n_test": n_test})
    if state_round is not None:
        record["state_round"] = state_round
    return RecordDict({IDENTITY: record})


def read_identity(content: RecordDict) -> Identity:
    record = content.config_records.get(IDENTITY)
    try:
        if record is None:
            raise KeyError(IDENTITY)
        state_round = record.get("state_round")
        return Identity(
            record_int(record["client_id"]),
            record_int(record.get("n_train", 0)),
            record_int(record.get("n_test", 0)),
            None if state_round is None else record_int(state_round),
        )
    except (TypeError, KeyError, ValueError) as err:
        raise PayloadError(f"hello reply: missing or malformed {IDENTITY!r} record") from err
