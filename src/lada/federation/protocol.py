"""Message types of the Flower runtime, and the hello step that introduces each client.

Each host step travels as a message of its own type: `query.hello` (the server sends the
experiment config, the client answers with its client id), `query.setup` (public pool),
`train.<host>_<exchange>` or `train.<host>_<exchange>_lada` when LaDa is plugged in (for example
`train.fedcot_train_lada`, `train.crosslm_generate`), and `evaluate.report`.
"""

from __future__ import annotations

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


def hello_content(config_json: str) -> RecordDict:
    return RecordDict({EXPERIMENT: ConfigRecord({"config": config_json})})


def read_hello(content: RecordDict) -> str:
    record = content.config_records.get(EXPERIMENT)
    if record is None or not isinstance(record.get("config"), str):
        raise PayloadError(f"hello: missing {EXPERIMENT!r} record with a 'config' string")
    return str(record["config"])


def identity_content(client_id: int, n_train: int, n_test: int) -> RecordDict:
    return RecordDict(
        {IDENTITY: ConfigRecord({"client_id": client_id, "n_train": n_train, "n_test": n_test})}
    )


def read_identity(content: RecordDict) -> int:
    record = content.config_records.get(IDENTITY)
    try:
        if record is None:
            raise KeyError(IDENTITY)
        return record_int(record["client_id"])
    except (TypeError, KeyError, ValueError) as err:
        raise PayloadError(f"hello reply: missing or malformed {IDENTITY!r} record") from err
