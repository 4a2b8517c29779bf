"""Typed payloads: the only things that cross between the server and a client.

A payload is a dataclass whose fields are plain values (str, int, float, bool), lists of those,
numpy arrays, or dicts of numpy arrays. That restriction is what lets one codec carry every
payload as a Flower record (arrays -> `ArrayRecord`, the rest -> `ConfigRecord`), lets the
in-process runtime count bytes the same way, and lets the privacy audit read every string.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

#: Registry of payload classes by kind, so a received record can be rebuilt.
PAYLOAD_TYPES: dict[str, type[Payload]] = {}


class PayloadError(ValueError):
    """A payload is malformed: a missing field, a wrong type, or too large."""


@dataclass
class Payload:
    """Base of every message body. Subclasses set `kind` and declare plain fields."""

    kind: ClassVar[str] = "payload"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            PAYLOAD_TYPES[cls.kind] = cls

    # -- split into arrays and config values (the two record kinds of Flower) --
    def split(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays: dict[str, np.ndarray] = {}
        config: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                arrays[f.name] = value
            elif isinstance(value, dict) and all(isinstance(v, np.ndarray) for v in value.values()):
                for key, array in value.items():
                    arrays[f"{f.name}/{key}"] = array
                config[f"{f.name}/__keys__"] = json.dumps(list(value))
            else:
                config[f.name] = json.dumps(value)
        return arrays, config

    @classmethod
    def join(cls, arrays: dict[str, np.ndarray], config: dict[str, Any]) -> Payload:
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            try:
                if f"{f.name}/__keys__" in config:
                    keys = json.loads(config[f"{f.name}/__keys__"])
                    values[f.name] = {k: arrays[f"{f.name}/{k}"] for k in keys}
                elif f.name in arrays:
                    values[f.name] = arrays[f.name]
                elif f.name in config:
                    values[f.name] = json.loads(config[f.name])
                elif f.default is not dataclasses.MISSING or (
                    f.default_factory is not dataclasses.MISSING
                ):
                    continue
                else:
                    raise PayloadError(f"{cls.kind}: missing field {f.name!r}")
            except (KeyError, json.JSONDecodeError, TypeError) as err:
                raise PayloadError(f"{cls.kind}: field {f.name!r} is malformed ({err})") from err
        try:
            return cls(**values)
        except TypeError as err:
            raise PayloadError(f"{cls.kind}: {err}") from err

    def nbytes(self) -> int:
        """Size on the wire: raw array bytes plus the UTF-8 JSON of the other fields."""
        arrays, config = self.split()
        size = sum(int(a.nbytes) for a in arrays.values())
        return size + sum(len(k) + len(str(v).encode()) for k, v in config.items())

    def strings(self) -> list[str]:
        """Every string this payload carries (for the privacy audit)."""
        out: list[str] = []
        _, config = self.split()
        for value in config.values():
            _collect_strings(json.loads(value), out)
        return out


def _collect_strings(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, list | tuple):
        for v in value:
            _collect_strings(v, out)
    elif isinstance(value, dict):
        for k, v in value.items():
            out.append(str(k))
            _collect_strings(v, out)


def decode(kind: str, arrays: dict[str, np.ndarray], config: dict[str, Any]) -> Payload:
    """Rebuild a payload of a registered kind; unknown kinds are a `PayloadError`."""
    if kind not in PAYLOAD_TYPES:
        raise PayloadError(f"unknown payload kind {kind!r}")
    return PAYLOAD_TYPES[kind].join(arrays, config)


# --------------------------------------------------------------------------- shared payloads
@dataclass
class Empty(Payload):
    """A message with no body (a request to run a step)."""

    kind: ClassVar[str] = "empty"


@dataclass
class PublicItems(Payload):
    """Public items as records (the public pool, or items the LLM generated)."""

    kind: ClassVar[str] = "public_items"
    items: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PublicPaths(Payload):
    """A sender's reasoning paths on public items, with the sender's own log-probs of them."""

    kind: ClassVar[str] = "public_paths"
    sender: str = ""
    item_ids: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    #: Path length in the sender's tokens (to length-normalise `logprobs` when asked).
    token_counts: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.item_ids) != len(self.paths):
            raise PayloadError(
                f"public_paths: {len(self.paths)} paths for {len(self.item_ids)} item ids"
            )
        if self.logprobs and len(self.logprobs) != len(self.paths):
            raise PayloadError(
                f"public_paths: {len(self.logprobs)} log-probs for {len(self.paths)} paths"
            )


@dataclass
class Weights(Payload):
    """Trainable weights (a LoRA adapter) and how many examples produced them."""

    kind: ClassVar[str] = "weights"
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    num_examples: int = 0


@dataclass
class EvalReport(Payload):
    """A client's evaluation of its own SLM on its private test split: numbers only."""

    kind: ClassVar[str] = "eval_report"
    accuracy: float = 0.0
    n: int = 0
    per_domain: dict[str, float] = field(default_factory=dict)
    #: The client's round log: seconds per phase, counters, mean losses, trained tokens.
    log: dict[str, Any] = field(default_factory=dict)
    #: What the client's filters chose: public item ids with scores (public information).
    selections: list[dict[str, Any]] = field(default_factory=list)
