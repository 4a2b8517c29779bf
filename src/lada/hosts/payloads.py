"""Typed payloads: the only things that cross between the server and a client.

A payload is a dataclass whose fields are plain values (str, int, float, bool), lists of those,
numpy arrays, or dicts of numpy arrays. That restriction is what lets one codec carry every
payload as a Flower record (arrays -> `ArrayRecord`, the rest -> `ConfigRecord`), lets the
in-process runtime count bytes the same way, and lets the privacy audit read every string.

A received message is untrusted input from another party, so `decode` checks it against the
payload's declared field types before anything uses it, and raises `PayloadError` naming the
payload kind and the field. The rules of the wire format:

- every field is present (the sender's `split` always writes all of them), nothing else is;
- config values are JSON text whose decoded value matches the field's type annotation;
- `float` values and floating-point arrays are finite (a NaN or inf log-prob, score or weight
  is a fault on the sender's side, never a value to learn from);
- `int` values and integer arrays are counts, sizes, ids or offsets, so never negative;
- an array field has the dimensionality and dtype family (integer, floating, bool) of its
  default, and no array has a non-numeric dtype;
- lists named like the per-item columns in `PARALLEL_TO_ITEM_IDS` are empty or as long as the
  payload's `item_ids`;
- then the payload's own `__post_init__` and `check` rules (lengths, ranges, item records).

`check_size` (or `decode(..., limit_bytes=...)`) bounds a message's size before it is parsed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Union

import numpy as np

from lada.tasks.item import ReasoningItem

#: Registry of payload classes by kind, so a received record can be rebuilt.
PAYLOAD_TYPES: dict[str, type[Payload]] = {}

#: Per-item list fields that, when present and non-empty, must be as long as `item_ids`.
PARALLEL_TO_ITEM_IDS: tuple[str, ...] = (
    "paths",
    "logprobs",
    "token_counts",
    "scores",
    "path_logprobs",
    "path_token_counts",
)

#: Config key under which a dict-of-arrays field lists its keys.
_KEYS_SUFFIX = "/__keys__"


class PayloadError(ValueError):
    """A payload is malformed: unknown kind, missing or extra record, wrong type, shape, dtype
    or length, a non-finite number, or too large.

    `kind` and `field` say where, when known (`field` is a path such as `logprobs[3]`); the
    message then reads `"{kind}: {field}: {problem}"`.
    """

    def __init__(self, message: str, *, kind: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.field = field

    def __reduce__(self) -> Any:
        # Keeps `kind` and `field` across pickling (Flower's simulation runs clients elsewhere).
        return (_rebuild_error, (type(self), self.args, self.__dict__))


class PayloadTooLarge(PayloadError):
    """A payload is bigger than the configured limit; `nbytes` and `limit_bytes` say by how much."""

    def __init__(self, where: str, kind: str, nbytes: int, limit_bytes: int) -> None:
        super().__init__(
            f"{where}: {kind} payload of {nbytes} bytes exceeds the limit of {limit_bytes} bytes",
            kind=kind,
        )
        self.where = where
        self.nbytes = nbytes
        self.limit_bytes = limit_bytes


def _rebuild_error(cls: type[PayloadError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    error = Exception.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


def malformed(kind: str, field_path: str, problem: str) -> PayloadError:
    """The error for one bad field of a payload of `kind`."""
    return PayloadError(f"{kind}: {field_path}: {problem}", kind=kind, field=field_path)


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
        """Arrays and JSON config values; which is which follows the field's declared type."""
        arrays: dict[str, np.ndarray] = {}
        config: dict[str, Any] = {}
        for spec in _schema(type(self)):
            value = getattr(self, spec.name)
            if spec.layout == "array":
                if not isinstance(value, np.ndarray):
                    raise malformed(
                        self.kind, spec.name, f"expected a numpy array, got {type(value).__name__}"
                    )
                arrays[spec.name] = value
            elif spec.layout == "array_dict":
                for key, array in value.items():
                    if not isinstance(array, np.ndarray):
                        raise malformed(
                            self.kind,
                            f"{spec.name}/{key}",
                            f"expected a numpy array, got {type(array).__name__}",
                        )
                    arrays[f"{spec.name}/{key}"] = array
                config[spec.name + _KEYS_SUFFIX] = json.dumps(list(value))
            else:
                config[spec.name] = json.dumps(value)
        return arrays, config

    @classmethod
    def join(cls, arrays: Mapping[str, Any], config: Mapping[str, Any]) -> Payload:
        """Rebuild a payload from received records; any deviation is a `PayloadError`."""
        if not isinstance(arrays, Mapping) or not isinstance(config, Mapping):
            raise malformed(
                cls.kind,
                "(message)",
                f"expected two mappings (arrays, config), got {_kind(arrays)}, {_kind(config)}",
            )
        values: dict[str, Any] = {}
        used_arrays: set[str] = set()
        used_config: set[str] = set()
        for spec in _schema(cls):
            try:
                if spec.layout == "array":
                    used_arrays.add(spec.name)
                    values[spec.name] = _conform_array(_present(arrays, spec.name), spec.template)
                elif spec.layout == "array_dict":
                    key_record = spec.name + _KEYS_SUFFIX
                    used_config.add(key_record)
                    keys = _string_keys(_json_value(_present(config, key_record)))
                    values[spec.name] = {}
                    for key in keys:
                        name = f"{spec.name}/{key}"
                        used_arrays.add(name)
                        if name not in arrays:
                            raise _Mismatch(f"/{key}", "missing")
                        values[spec.name][key] = _conform_array(arrays[name], None, f"/{key}")
                else:
                    used_config.add(spec.name)
                    value = _json_value(_present(config, spec.name))
                    values[spec.name] = _conform(value, spec.hint, "")
            except _Mismatch as mismatch:
                raise malformed(cls.kind, spec.name + mismatch.where, mismatch.problem) from None
        extra = sorted(set(map(str, arrays)) - used_arrays) + sorted(
            set(map(str, config)) - used_config
        )
        if extra:
            raise malformed(cls.kind, extra[0], f"unexpected record (not a field of {cls.kind})")
        _check_parallel(cls.kind, values)
        try:
            payload = cls(**values)
        except PayloadError:
            raise
        except (TypeError, ValueError, IndexError) as err:
            raise PayloadError(f"{cls.kind}: {err}", kind=cls.kind) from err
        payload.check()
        return payload

    def check(self) -> None:
        """Rules across fields or on values that types cannot say; raise `PayloadError`."""

    def nbytes(self) -> int:
        """Size on the wire: raw array bytes plus the UTF-8 JSON of the other fields."""
        return wire_size(*self.split())

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


def wire_size(arrays: Mapping[str, Any], config: Mapping[str, Any]) -> int:
    """Bytes of a message as split: array bytes plus keys and UTF-8 text of config values."""
    size = sum(int(a.nbytes) for a in arrays.values() if isinstance(a, np.ndarray))
    return size + sum(len(str(k)) + len(str(v).encode()) for k, v in config.items())


def check_size(payload_or_nbytes: Payload | int, limit_bytes: int | None, where: str) -> int:
    """Raise `PayloadTooLarge` when a payload (or a byte count) exceeds `limit_bytes`.

    `limit_bytes=None` means no bound. Returns the size, so a caller can count it. `where` says
    which exchange and direction (e.g. "train/up from client 2") for the message.
    """
    if isinstance(payload_or_nbytes, Payload):
        kind, size = payload_or_nbytes.kind, payload_or_nbytes.nbytes()
    else:
        kind, size = "message", int(payload_or_nbytes)
    _bound(kind, size, limit_bytes, where)
    return size


def _bound(kind: str, size: int, limit_bytes: int | None, where: str) -> None:
    if limit_bytes is None:
        return
    if limit_bytes < 0:
        raise ValueError(f"limit_bytes: must be >= 0 or None, got {limit_bytes}")
    if size > limit_bytes:
        raise PayloadTooLarge(where, kind, size, limit_bytes)


def decode(
    kind: str,
    arrays: Mapping[str, Any],
    config: Mapping[str, Any],
    *,
    limit_bytes: int | None = None,
    where: str = "received",
) -> Payload:
    """Rebuild a payload of a registered kind, or raise `PayloadError` saying what is wrong.

    With `limit_bytes` the message's size is checked first (`PayloadTooLarge`), before any of
    it is parsed. See the module docstring for every rule a message must follow.
    """
    if not isinstance(kind, str) or kind not in PAYLOAD_TYPES:
        known = ", ".join(sorted(PAYLOAD_TYPES))
        raise PayloadError(f"unknown payload kind {kind!r} (known: {known})", kind=str(kind))
    if limit_bytes is not None and isinstance(arrays, Mapping) and isinstance(config, Mapping):
        _bound(kind, wire_size(arrays, config), limit_bytes, where)
    return PAYLOAD_TYPES[kind].join(arrays, config)


# --------------------------------------------------------------------------- field schema
@dataclass(frozen=True)
class _FieldSpec:
    """How one payload field travels and what it must hold."""

    name: str
    hint: Any
    layout: Literal["array", "array_dict", "json"]
    template: np.ndarray | None  # an array field's default: its ndim and dtype family


_SCHEMAS: dict[type, tuple[_FieldSpec, ...]] = {}


def _schema(cls: type[Payload]) -> tuple[_FieldSpec, ...]:
    cached = _SCHEMAS.get(cls)
    if cached is not None:
        return cached
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        template = None
        if hint is np.ndarray:
            layout = "array"
            if f.default_factory is not dataclasses.MISSING:
                template = np.asarray(f.default_factory())
        elif typing.get_origin(hint) is dict and typing.get_args(hint)[1:] == (np.ndarray,):
            layout = "array_dict"
        else:
            layout = "json"
        specs.append(_FieldSpec(f.name, hint, layout, template))
    _SCHEMAS[cls] = tuple(specs)
    return _SCHEMAS[cls]


class _Mismatch(Exception):
    """A value does not fit its declared type; `where` is a suffix such as `[3]` or `['a']`."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(problem)
        self.where = where
        self.problem = problem


def _present(records: Mapping[str, Any], name: str) -> Any:
    if name not in records:
        raise _Mismatch("", "missing")
    return records[name]


def _json_value(text: Any) -> Any:
    if not isinstance(text, str | bytes):
        raise _Mismatch("", f"expected JSON text, got {_kind(text)}")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:
        raise _Mismatch("", f"invalid JSON ({err})") from None


def _string_keys(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
        raise _Mismatch("", f"expected a list of key strings, got {_kind(value)}")
    if len(set(value)) != len(value):
        raise _Mismatch("", "duplicate keys")
    return value


def _conform(value: Any, hint: Any, where: str) -> Any:
    """`value` (decoded JSON) checked against `hint`; ints are widened where a float is due."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        first: _Mismatch | None = None
        for option in options:
            if option is type(None):
                continue
            try:
                return _conform(value, option, where)
            except _Mismatch as mismatch:
                first = first or mismatch
        assert first is not None
        raise first
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise _Mismatch(where, f"{value!r} is not one of {list(typing.get_args(hint))}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise _Mismatch(where, f"expected a boolean, got {_kind(value)}")
        return value
    if hint is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _Mismatch(where, f"expected an integer, got {_kind(value)}")
        if value < 0:
            raise _Mismatch(where, f"must not be negative, got {value}")
        return value
    if hint is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise _Mismatch(where, f"expected a number, got {_kind(value)}")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond the float range
            number = math.inf
        if not math.isfinite(number):
            raise _Mismatch(where, f"must be finite, got {value!r}")
        return number
    if hint is str:
        if not isinstance(value, str):
            raise _Mismatch(where, f"expected a string, got {_kind(value)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise _Mismatch(where, f"expected a list, got {_kind(value)}")
        item_hint = typing.get_args(hint)[0] if typing.get_args(hint) else Any
        return [_conform(v, item_hint, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _Mismatch(where, f"expected an object, got {_kind(value)}")
        value_hint = typing.get_args(hint)[1] if typing.get_args(hint) else Any
        return {k: _conform(v, value_hint, f"{where}[{k!r}]") for k, v in value.items()}
    return value  # a type this codec does not constrain further


def _conform_array(value: Any, template: np.ndarray | None, where: str = "") -> np.ndarray:
    """A received array checked for type, dtype family, dimensionality and finite values."""
    if not isinstance(value, np.ndarray):
        raise _Mismatch(where, f"expected a numpy array, got {type(value).__name__}")
    family = value.dtype.kind
    if family not in "biuf":
        raise _Mismatch(where, f"dtype {value.dtype} is not numeric")
    if template is not None:
        if value.ndim != template.ndim:
            raise _Mismatch(
                where, f"expected a {template.ndim}-D array, got shape {tuple(value.shape)}"
            )
        wanted = _family(template.dtype.kind)
        if _family(family) != wanted:
            raise _Mismatch(where, f"expected an array of {wanted} dtype, got {value.dtype}")
    if family == "f" and value.size and not np.all(np.isfinite(value)):
        bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
        raise _Mismatch(where, f"{bad} of {value.size} values are not finite")
    if family == "i" and value.size and value.min() < 0:
        raise _Mismatch(where, f"negative values (min {value.min()})")
    return value


def _family(dtype_kind: str) -> str:
    names = {"b": "bool", "i": "integer", "u": "integer", "f": "floating"}
    return names.get(dtype_kind, dtype_kind)


def _check_parallel(kind: str, values: Mapping[str, Any]) -> None:
    ids = values.get("item_ids")
    if not isinstance(ids, list):
        return
    for name in PARALLEL_TO_ITEM_IDS:
        column = values.get(name)
        if isinstance(column, list) and column and len(column) != len(ids):
            raise malformed(kind, name, f"{len(column)} values for {len(ids)} item ids")


def _kind(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    for python_type, label in names.items():
        if isinstance(value, python_type):
            return label
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


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

    def check(self) -> None:
        """Every record is a valid `ReasoningItem` record, and ids are unique."""
        seen: set[str] = set()
        for index, record in enumerate(self.items):
            item = _item_record(self.kind, f"items[{index}]", record)
            if item.id in seen:
                raise malformed(self.kind, f"items[{index}].id", f"duplicate id {item.id!r}")
            seen.add(item.id)


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
            raise malformed(
                self.kind, "paths", f"{len(self.paths)} paths for {len(self.item_ids)} item ids"
            )
        if self.logprobs and len(self.logprobs) != len(self.paths):
            raise malformed(
                self.kind,
                "logprobs",
                f"{len(self.logprobs)} log-probs for {len(self.paths)} paths",
            )

    def check(self) -> None:
        """Item ids are unique (a path per item)."""
        _check_unique_ids(self.kind, self.item_ids)


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

    def check(self) -> None:
        """Accuracies are fractions."""
        if not 0.0 <= self.accuracy <= 1.0:
            raise malformed(self.kind, "accuracy", f"must lie in [0, 1], got {self.accuracy}")
        for domain, value in self.per_domain.items():
            if not 0.0 <= value <= 1.0:
                raise malformed(
                    self.kind, f"per_domain[{domain!r}]", f"must lie in [0, 1], got {value}"
                )


# --------------------------------------------------------------------------- record checks
_ITEM_HINTS = typing.get_type_hints(ReasoningItem)
_ITEM_REQUIRED = tuple(
    f.name
    for f in dataclasses.fields(ReasoningItem)
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
)


def _item_record(kind: str, where: str, record: Any) -> ReasoningItem:
    """A `ReasoningItem` from a received record, or a `PayloadError` naming the bad field."""
    if not isinstance(record, dict):
        raise malformed(kind, where, f"expected an item object, got {_kind(record)}")
    for name in _ITEM_REQUIRED:
        if name not in record:
            raise malformed(kind, f"{where}.{name}", "missing")
    for name, value in record.items():
        if name not in _ITEM_HINTS:
            raise malformed(kind, f"{where}.{name}", "not a field of a reasoning item")
        try:
            _conform(value, _ITEM_HINTS[name], "")
        except _Mismatch as mismatch:
            raise malformed(kind, f"{where}.{name}{mismatch.where}", mismatch.problem) from None
    try:
        return ReasoningItem.from_dict(record)
    except ValueError as err:  # the item's own checks read "field: problem"
        name, _, problem = str(err).partition(": ")
        raise malformed(kind, f"{where}.{name}", problem or str(err)) from None


def _check_unique_ids(kind: str, item_ids: list[str]) -> None:
    seen: set[str] = set()
    for index, item_id in enumerate(item_ids):
        if item_id in seen:
            raise malformed(kind, f"item_ids[{index}]", f"duplicate id {item_id!r}")
        seen.add(item_id)
