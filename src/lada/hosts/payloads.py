"""Typed payloads: the only things that cross between the server and a client.

A payload is a dataclass whose fields are plain values (str, int, float, bool), lists of those,
numpy arrays, or dicts of numpy arrays. That restriction is what lets one codec carry every
payload as a Flower record (arrays -> `ArrayRecord`, the rest -> `ConfigRecord`), lets the
in-process runtime count bytes the same way, and lets the privacy audit read every string.

A received message is untrusted input from another party, so `decode` validates it before
anything uses it, with a pydantic schema derived once per payload class from its declared field
types, and raises `PayloadError` naming the payload kind and the field. The rules of the wire
format:

- every field is present (the sender's `split` always writes all of them), nothing else is;
- config values are JSON text whose decoded value matches the field's type annotation;
- `float` values and floating-point arrays are finite (a NaN or inf log-prob, score or weight
  is a fault on the sender's side, never a value to learn from): `Finite`, `ArrayRule`;
- `int` values and integer arrays are counts, sizes, ids or offsets, so never negative:
  `Count`, `ArrayRule`;
- an array field has the dimensionality and dtype family (integer, floating, bool) of its
  default, and no array has a non-numeric dtype (`ArrayRule.like`);
- lists named like the per-item columns in `PARALLEL_TO_ITEM_IDS` are empty or as long as the
  payload's `item_ids`;
- then the payload's own `__post_init__` and `check` rules (lengths, ranges, item records).

`check_size` (or `decode(..., limit_bytes=...)`) bounds a message's size before it is parsed.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, NamedTuple, NotRequired, Union

import numpy as np
from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    Strict,
    TypeAdapter,
    ValidationError,
    with_config,
)
from pydantic_core import CoreSchema, ErrorDetails, PydanticCustomError, core_schema
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

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
        for name, layout in _wire(type(self)).layouts.items():
            value = getattr(self, name)
            if layout == "array":
                if not isinstance(value, np.ndarray):
                    raise malformed(
                        self.kind, name, f"expected a numpy array, got {type(value).__name__}"
                    )
                arrays[name] = value
            elif layout == "array_dict":
                for key, array in value.items():
                    if not isinstance(array, np.ndarray):
                        raise malformed(
                            self.kind,
                            f"{name}/{key}",
                            f"expected a numpy array, got {type(array).__name__}",
                        )
                    arrays[f"{name}/{key}"] = array
                config[name + _KEYS_SUFFIX] = json.dumps(list(value))
            else:
                config[name] = json.dumps(value)
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
        wire = _wire(cls)
        try:
            values: dict[str, Any] = wire.records.validate_python(wire.gather(arrays, config))
        except ValidationError as invalid:
            raise wire.refusal(cls.kind, invalid) from None
        extra = wire.unexpected(arrays, config, values)
        if extra is not None:
            raise malformed(cls.kind, extra, f"unexpected record (not a field of {cls.kind})")
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


# --------------------------------------------------------------------------- field types
#: A count, size, id or offset: an integer (not a boolean), never negative.
Count = Annotated[int, Strict(), Field(ge=0)]
#: A finite number (an integer is widened to float; a boolean is refused).
Finite = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Text = Annotated[str, Strict()]
Flag = Annotated[bool, Strict()]

_SCALARS: dict[Any, Any] = {int: Count, float: Finite, str: Text, bool: Flag}


def _problem(text: str) -> PydanticCustomError:
    """A validation error whose message is `text`, as `PayloadError` will print it."""
    return PydanticCustomError("payload", "{problem}", {"problem": text})


#: Stands for an array that a dict-of-arrays field lists but the message does not carry.
_ABSENT: Any = object()


@dataclass(frozen=True)
class ArrayRule:
    """A received numpy array, as pydantic metadata: `Annotated[np.ndarray, ArrayRule(...)]`.

    The array has a numeric dtype, floating values are finite and signed integers are not
    negative; with `ndim` and `family` ("integer", "floating" or "bool") it also has that many
    dimensions and a dtype of that family.
    """

    ndim: int | None = None
    family: str | None = None

    @classmethod
    def like(cls, template: np.ndarray) -> ArrayRule:
        """The rule for an array field whose default is `template`: its ndim and dtype family."""
        return cls(template.ndim, _family(template.dtype.kind))

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(self.validate)

    def validate(self, value: Any) -> np.ndarray:
        """`value` itself when it keeps the rule; else a pydantic error saying what is wrong."""
        if value is _ABSENT:
            raise _problem("missing")
        if not isinstance(value, np.ndarray):
            raise _problem(f"expected a numpy array, got {type(value).__name__}")
        family = value.dtype.kind
        if family not in "biuf":
            raise _problem(f"dtype {value.dtype} is not numeric")
        if self.ndim is not None and value.ndim != self.ndim:
            raise _problem(f"expected a {self.ndim}-D array, got shape {tuple(value.shape)}")
        if self.family is not None and _family(family) != self.family:
            raise _problem(f"expected an array of {self.family} dtype, got {value.dtype}")
        if family == "f" and value.size and not np.all(np.isfinite(value)):
            bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
            raise _problem(f"{bad} of {value.size} values are not finite")
        if family == "i" and value.size and value.min() < 0:
            raise _problem(f"negative values (min {value.min()})")
        return value


def _family(dtype_kind: str) -> str:
    names = {"b": "bool", "i": "integer", "u": "integer", "f": "floating"}
    return names.get(dtype_kind, dtype_kind)


def _json_text(text: Any) -> Any:
    """A config record decoded from JSON text (its field's type then checks the value)."""
    if not isinstance(text, str | bytes):
        raise _problem(f"expected JSON text, got {_kind(text)}")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:
        raise _problem(f"invalid JSON ({err})") from None


class _Listing(NamedTuple):
    """A dict-of-arrays field as received: its keys record, and the arrays sent under its name."""

    keys: Any
    arrays: dict[str, Any]


def _listed_arrays(listing: _Listing) -> dict[str, Any]:
    """The arrays the keys record lists, by key (`_ABSENT` for one the message lacks)."""
    keys = _json_text(listing.keys)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise _problem(f"expected a list of key strings, got {_kind(keys)}")
    if len(set(keys)) != len(keys):
        raise _problem("duplicate keys")
    return {key: listing.arrays.get(key, _ABSENT) for key in keys}


def _generic(origin: type, *args: Any) -> Any:
    """`origin[args]` for type arguments computed at run time (`list[x]` for a derived `x`)."""
    return types.GenericAlias(origin, args)


def _typed_dict(name: str, fields: dict[str, Any]) -> Any:
    """A `TypedDict` class whose fields are known only at run time, so it has no static type."""
    make: Any = TypedDict
    return make(name, fields)


def _json_type(hint: Any) -> Any:
    """The validated type of a JSON field declared as `hint` (`int` -> `Count`, ...)."""
    if hint is Any or hint in _SCALARS:
        return _SCALARS.get(hint, hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return hint
    if origin in (list, tuple):  # JSON has one sequence type; a tuple[X, ...] arrives as a list
        return _generic(list, _json_type(args[0]) if args else Any)
    if origin is dict:  # JSON object keys are strings
        return _generic(dict, str, _json_type(args[1]) if args else Any)
    if origin in (Union, types.UnionType) and len(args) == 2 and type(None) in args:
        (inner,) = (arg for arg in args if arg is not type(None))
        return _json_type(inner) | None
    raise TypeError(f"a payload field of type {hint} cannot travel as JSON")


# --------------------------------------------------------------------------- schema of a kind
_Layout = Literal["array", "array_dict", "json"]


@dataclass(frozen=True)
class _Wire:
    """How one payload class travels: each field's layout, and the validator of its records."""

    layouts: dict[str, _Layout]
    records: TypeAdapter[dict[str, Any]]

    def gather(self, arrays: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
        """The received records by field; an absent field stays absent (pydantic names it)."""
        fields: dict[str, Any] = {}
        for name, layout in self.layouts.items():
            if layout != "array_dict":
                records = arrays if layout == "array" else config
                if name in records:
                    fields[name] = records[name]
            elif name + _KEYS_SUFFIX in config:
                prefix = name + "/"
                listed = {
                    key.removeprefix(prefix): array
                    for key, array in arrays.items()
                    if isinstance(key, str) and key.startswith(prefix)
                }
                fields[name] = _Listing(config[name + _KEYS_SUFFIX], listed)
        return fields

    def unexpected(
        self, arrays: Mapping[str, Any], config: Mapping[str, Any], values: Mapping[str, Any]
    ) -> str | None:
        """The first record that is no part of the validated `values`, if any."""
        used_arrays = {name for name, layout in self.layouts.items() if layout == "array"}
        used_config = {name for name, layout in self.layouts.items() if layout == "json"}
        for name in self.layouts.keys() - used_arrays - used_config:  # dicts of arrays
            used_config.add(name + _KEYS_SUFFIX)
            used_arrays.update(f"{name}/{key}" for key in values[name])
        extra = sorted(set(map(str, arrays)) - used_arrays) + sorted(
            set(map(str, config)) - used_config
        )
        return extra[0] if extra else None

    def refusal(self, kind: str, invalid: ValidationError) -> PayloadError:
        """The `PayloadError` for the first problem pydantic found, naming the field."""
        error = invalid.errors(include_url=False)[0]
        name, *rest = error["loc"]
        where = str(name)
        if rest and self.layouts.get(where) == "array_dict":
            where += f"/{rest.pop(0)}"
        return malformed(kind, where + _subscripts(rest), _describe(error))


_WIRES: dict[type, _Wire] = {}


def _wire(cls: type[Payload]) -> _Wire:
    """The (cached) wire schema of a payload class, derived from its dataclass fields."""
    cached = _WIRES.get(cls)
    if cached is not None:
        return cached
    hints = typing.get_type_hints(cls)
    layouts: dict[str, _Layout] = {}
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if hint is np.ndarray:
            layouts[f.name] = "array"
            factory = f.default_factory
            rule = (
                ArrayRule()
                if factory is dataclasses.MISSING
                else ArrayRule.like(np.asarray(factory()))
            )
            fields[f.name] = Annotated[np.ndarray, rule]
        elif typing.get_origin(hint) is dict and typing.get_args(hint)[1:] == (np.ndarray,):
            layouts[f.name] = "array_dict"
            arrays = dict[str, Annotated[np.ndarray, ArrayRule()]]
            fields[f.name] = Annotated[arrays, BeforeValidator(_listed_arrays)]
        else:
            layouts[f.name] = "json"
            fields[f.name] = Annotated[_json_type(hint), BeforeValidator(_json_text)]
    records = TypeAdapter(_typed_dict(f"{cls.__name__}Records", fields))
    _WIRES[cls] = _Wire(layouts, records)
    return _WIRES[cls]


# --------------------------------------------------------------------------- error messages
#: The problem each kind of pydantic error stands for (`json` is the JSON kind of the input).
_PROBLEMS = {
    "payload": "{problem}",  # raised here, with the message already written
    "missing": "missing",
    "greater_than_equal": "must not be negative, got {input}",
    "finite_number": "must be finite, got {input!r}",
    "literal_error": "{input!r} is not one of {expected}",
    "bool_type": "expected a boolean, got {json}",
    "int_type": "expected an integer, got {json}",
    "float_type": "expected a number, got {json}",
    "string_type": "expected a string, got {json}",
    "list_type": "expected a list, got {json}",
    "dict_type": "expected an object, got {json}",
}


def _describe(error: ErrorDetails) -> str:
    """One pydantic error as the problem part of a `PayloadError` message."""
    kind, value = error["type"], error.get("input")
    if kind == "float_type" and type(value) is int:  # an integer beyond the float range
        kind = "finite_number"
    if kind not in _PROBLEMS:
        return error["msg"]
    return _PROBLEMS[kind].format(input=value, json=_kind(value), **error.get("ctx", {}))


def _subscripts(loc: typing.Sequence[int | str]) -> str:
    """`[3]['a']` for a location inside a JSON value (list indices, then object keys)."""
    return "".join(f"[{part}]" if isinstance(part, int) else f"[{part!r}]" for part in loc)


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
        for index, item in enumerate(_items(self.kind, self.items)):
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


def fixed_width_seconds(value: Any) -> str:
    """A JSON number of the same width for any duration from 1e-99 s to 1e99 s, or 0: 17
    significant digits (`1.2345678901234567e-01`), which read back as the same float."""
    number = float(value)
    if number == 0.0 or 1e-99 <= abs(number) < 1e100:
        return format(number, ".16e")
    return json.dumps(number)  # outside any real duration: as JSON writes it


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

    def split(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """As every payload, but the log's phase seconds are written with a fixed width: they
        differ between identical runs, and with them the size of the report would, so the
        bytes counted for a round would too. `fixed_width_seconds` keeps every digit."""
        arrays, config = super().split()
        timings = self.log.get("timings")
        if isinstance(timings, dict):
            rest = json.dumps({k: v for k, v in self.log.items() if k != "timings"})
            seconds = ", ".join(
                f"{json.dumps(str(k))}: {fixed_width_seconds(v)}" for k, v in timings.items()
            )
            config["log"] = (
                rest[:-1] + (", " if rest != "{}" else "") + f'"timings": {{{seconds}}}}}'
            )
        return arrays, config

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
def _item_records() -> TypeAdapter[list[dict[str, Any]]]:
    """A validator of `ReasoningItem` records: the item's fields, typed, and nothing else."""
    hints = typing.get_type_hints(ReasoningItem)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(ReasoningItem):
        required = f.default is f.default_factory is dataclasses.MISSING
        wire_type = _json_type(hints[f.name])
        fields[f.name] = wire_type if required else NotRequired[wire_type]
    record = with_config(ConfigDict(extra="forbid"))(_typed_dict("ItemRecord", fields))
    return TypeAdapter(_generic(list, record))


_ITEM_RECORDS = _item_records()


def _items(kind: str, records: Any) -> list[ReasoningItem]:
    """`ReasoningItem`s from received records, or a `PayloadError` naming the bad field."""
    try:
        _ITEM_RECORDS.validate_python(records)
    except ValidationError as invalid:
        error = invalid.errors(include_url=False)[0]
        index, *rest = error["loc"]
        if not rest:
            problem = f"expected an item object, got {_kind(error['input'])}"
        elif error["type"] == "extra_forbidden":
            problem = "not a field of a reasoning item"
        else:
            problem = _describe(error)
        where = f"items[{index}]" + (f".{rest[0]}{_subscripts(rest[1:])}" if rest else "")
        raise malformed(kind, where, problem) from None
    items = []
    for index, record in enumerate(records):
        try:
            items.append(ReasoningItem.from_dict(record))
        except ValueError as err:  # the item's own checks read "field: problem"
            name, _, problem = str(err).partition(": ")
            raise malformed(kind, f"items[{index}].{name}", problem or str(err)) from None
    return items


def _check_unique_ids(kind: str, item_ids: list[str]) -> None:
    seen: set[str] = set()
    for index, item_id in enumerate(item_ids):
        if item_id in seen:
            raise malformed(kind, f"item_ids[{index}]", f"duplicate id {item_id!r}")
        seen.add(item_id)
