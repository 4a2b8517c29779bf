"""Typed payloads as Flower records, and their size on the wire.

One codec for every runtime: the in-process runtime and the Flower runtime both turn a payload
into the same `RecordDict` (arrays -> `ArrayRecord`, other fields -> `ConfigRecord` of JSON,
plus a small header naming the payload kind, the exchange and the round), so bytes are counted
from the same serialized objects and a step only ever sees what was rebuilt from records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

from lada.hosts.payloads import Payload, PayloadError, decode

ARRAYS = "arrays"
FIELDS = "fields"
HEADER = "header"


@dataclass(frozen=True)
class Header:
    """What a message is about: the payload kind, the host exchange and the round."""

    kind: str
    exchange: str
    round_idx: int


def record_int(value: object) -> int:
    """An integer read from an untrusted record value: an int or a numeric string.

    Anything else raises `TypeError` (booleans too), a non-numeric string `ValueError`.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return int(value)


def to_records(payload: Payload, exchange: str, round_idx: int) -> RecordDict:
    """A payload as a `RecordDict` ready to travel in a Flower message."""
    arrays, config = payload.split()
    array_record = ArrayRecord(
        array_dict={k: Array.from_numpy_ndarray(np.ascontiguousarray(v)) for k, v in arrays.items()}
    )
    header = ConfigRecord({"kind": payload.kind, "exchange": exchange, "round": round_idx})
    return RecordDict({HEADER: header, ARRAYS: array_record, FIELDS: ConfigRecord(config)})


def read_header(content: RecordDict) -> Header:
    """The header of a received record dict; a `PayloadError` when it is missing or malformed."""
    if HEADER not in content.config_records:
        raise PayloadError(f"message: missing record {HEADER!r}")
    header = content.config_records[HEADER]
    try:
        return Header(str(header["kind"]), str(header["exchange"]), record_int(header["round"]))
    except (KeyError, TypeError, ValueError) as err:
        raise PayloadError(f"message: malformed {HEADER!r} record ({err!r})") from err


def from_records(content: RecordDict) -> tuple[Header, Payload]:
    """Rebuild the typed payload a message carries; a `PayloadError` names what is wrong."""
    header = read_header(content)
    for name in (ARRAYS, FIELDS):
        if name not in content:
            raise PayloadError(f"{header.kind}: missing record {name!r}")
    if not isinstance(content[ARRAYS], ArrayRecord):
        raise PayloadError(f"{header.kind}: record {ARRAYS!r} is not an ArrayRecord")
    if not isinstance(content[FIELDS], ConfigRecord):
        raise PayloadError(f"{header.kind}: record {FIELDS!r} is not a ConfigRecord")
    arrays = {k: v.numpy() for k, v in content.array_records[ARRAYS].items()}
    fields: dict[str, Any] = dict(content.config_records[FIELDS])
    return header, decode(header.kind, arrays, fields)


def record_nbytes(content: RecordDict) -> int:
    """Bytes of the serialized record tree (every nested object as it is sent)."""
    return sum(len(obj.deflate()) for obj in get_all_nested_objects(content).values())
