"""Received payloads are untrusted: every malformed record is refused with kind and field named."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import lada.hosts.crosslm  # noqa: F401  (registers item_scores)
import lada.hosts.fedcollm  # noqa: F401  (registers slm_card, global_adapter, adapter_update)
import lada.hosts.fedmkt  # noqa: F401  (registers topk_logits)
from lada.hosts.crosslm import ItemScores
from lada.hosts.fedcollm import AdapterUpdate, GlobalAdapter, SLMCard
from lada.hosts.fedmkt import TopKLogits
from lada.hosts.payloads import (
    PAYLOAD_TYPES,
    Empty,
    EvalReport,
    Payload,
    PayloadError,
    PayloadTooLarge,
    PublicItems,
    PublicPaths,
    Weights,
    check_size,
    decode,
    wire_size,
)
from lada.tasks.item import ReasoningItem

ITEM = ReasoningItem("pub:1", "add", "What is 2 + 3?", "5", "numeric", "2 + 3 = 5")
OPTION_ITEM = ReasoningItem("pub:2", "mc", "Pick one.", "B", "option", choices=("x", "y"))
PATHS = {
    "sender": "llm",
    "item_ids": ["pub:1", "pub:2"],
    "paths": [" 2 + 3 = 5\n#### 5\n", " #### B\n"],
    "logprobs": [-3.5, -1.25],
    "token_counts": [12, 7],
}


def _tensors() -> dict[str, np.ndarray]:
    return {
        "layer.lora_A": np.ones((2, 3), np.float32),
        "layer.lora_B": np.zeros((3, 2), np.float32),
    }


def _samples() -> dict[str, Payload]:
    """One valid payload of every registered kind."""
    return {
        "empty": Empty(),
        "public_items": PublicItems(items=[ITEM.to_dict(), OPTION_ITEM.to_dict()]),
        "public_paths": PublicPaths(**PATHS),
        "weights": Weights(tensors=_tensors(), num_examples=4),
        "eval_report": EvalReport(
            accuracy=0.5,
            n=4,
            per_domain={"add": 1.0, "mc": 0.0},
            log={"counters": {"selected": 3.0}, "losses": {"lada_total": float("nan")}},
            selections=[{"filter": "llm->slm_0", "rewards": {"reward_mean": float("nan")}}],
        ),
        "topk_logits": TopKLogits(
            sender="slm_0",
            item_ids=["pub:1", "pub:2"],
            vocab=["<pad>", "a", "b", "c"],
            offsets=np.array([0, 2, 3], np.int64),
            tokens=np.array([1, 2, 3], np.int32),
            topk_ids=np.array([[1, 2], [2, 3], [3, 1]], np.int32),
            topk_logprobs=np.full((3, 2), -0.5, np.float16),
            nll=np.array([1.5, 0.5], np.float32),
            paths=list(PATHS["paths"]),
            path_logprobs=[-2.0, -1.0],
            path_token_counts=[5, 3],
        ),
        "item_scores": ItemScores(item_ids=["gen:1", "gen:2"], scores=[0.25, -1.5]),
        "slm_card": SLMCard(
            tensors=_tensors(), num_examples=2, source="{}", dtype="float32", base_fingerprint="f"
        ),
        "global_adapter": GlobalAdapter(tensors=_tensors(), num_examples=6, **PATHS),
        "adapter_update": AdapterUpdate(tensors=_tensors(), num_examples=2, **PATHS),
    }


def _message(kind: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    arrays, config = _samples()[kind].split()
    return {k: v.copy() for k, v in arrays.items()}, dict(config)


def _refused(kind: str, arrays: dict[str, Any], config: dict[str, Any]) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        decode(kind, arrays, config)
    return caught.value


def test_samples_cover_every_registered_kind() -> None:
    assert set(_samples()) == set(PAYLOAD_TYPES)


@pytest.mark.parametrize("kind", sorted(_samples()))
def test_valid_payloads_survive_the_codec(kind: str) -> None:
    payload = _samples()[kind]
    arrays, config = payload.split()
    arrived = decode(kind, arrays, config)
    assert type(arrived) is type(payload)
    again_arrays, again_config = arrived.split()
    assert again_config == config
    assert set(again_arrays) == set(arrays)
    for name, array in arrays.items():
        np.testing.assert_array_equal(again_arrays[name], array)
        assert again_arrays[name].dtype == array.dtype


def test_empty_dicts_travel_as_json_by_their_declared_type() -> None:
    arrays, config = EvalReport().split()
    assert arrays == {} and json.loads(config["per_domain"]) == {}
    arrays, config = Weights().split()
    assert arrays == {} and json.loads(config["tensors/__keys__"]) == []


def test_unknown_kind_is_named() -> None:
    error = _refused("topk_logitz", {}, {})
    assert "unknown payload kind 'topk_logitz'" in str(error) and "topk_logits" in str(error)


# ------------------------------------------------------------------ every kind, every field
def _records(kind: str) -> list[str]:
    arrays, config = _message(kind)
    return sorted(arrays) + sorted(config)


@pytest.mark.parametrize(
    ("kind", "record"),
    [(kind, record) for kind in sorted(_samples()) for record in _records(kind)],
)
def test_missing_record_is_named(kind: str, record: str) -> None:
    arrays, config = _message(kind)
    arrays.pop(record, None)
    config.pop(record, None)
    field_name = record.removesuffix("/__keys__")
    error = _refused(kind, arrays, config)
    assert str(error).startswith(f"{kind}: {field_name}")
    assert "missing" in str(error)
    assert error.kind == kind and error.field is not None


@pytest.mark.parametrize("kind", sorted(_samples()))
def test_unexpected_record_is_named(kind: str) -> None:
    arrays, config = _message(kind)
    config["secret_text"] = json.dumps("private rationale")
    assert str(_refused(kind, arrays, config)).startswith(f"{kind}: secret_text: unexpected record")
    arrays, config = _message(kind)
    arrays["stray"] = np.zeros(2, np.float32)
    assert str(_refused(kind, arrays, config)).startswith(f"{kind}: stray: unexpected record")


@pytest.mark.parametrize(
    ("kind", "name"),
    [(kind, name) for kind in sorted(_samples()) for name in sorted(_message(kind)[1])],
)
def test_config_value_of_wrong_type_or_not_json_is_named(kind: str, name: str) -> None:
    field_name = name.removesuffix("/__keys__")
    arrays, config = _message(kind)
    original = json.loads(config[name])
    config[name] = json.dumps("oops") if isinstance(original, dict) else json.dumps({"x": [1]})
    error = _refused(kind, arrays, config)
    assert str(error).startswith(f"{kind}: {field_name}")
    assert "expected" in str(error)

    arrays, config = _message(kind)
    config[name] = "{not json"
    assert str(_refused(kind, arrays, config)).startswith(f"{kind}: {field_name}: invalid JSON")

    arrays, config = _message(kind)
    config[name] = 12  # a Flower ConfigRecord value that is not text
    assert "expected JSON text" in str(_refused(kind, arrays, config))


ARRAY_FIELDS = [(kind, name) for kind in sorted(_samples()) for name in sorted(_message(kind)[0])]


@pytest.mark.parametrize(("kind", "name"), ARRAY_FIELDS)
def test_array_of_wrong_kind_shape_or_dtype_is_named(kind: str, name: str) -> None:
    arrays, config = _message(kind)
    good = arrays[name]

    arrays[name] = good.tolist()
    assert str(_refused(kind, arrays, config)).startswith(f"{kind}: {name}: expected a numpy array")

    arrays[name] = np.array(["a"] * good.size, dtype=object)
    assert "is not numeric" in str(_refused(kind, arrays, config))

    if good.dtype.kind == "f":
        arrays[name] = good.copy()
        arrays[name].flat[0] = np.nan
        error = _refused(kind, arrays, config)
        assert str(error).startswith(f"{kind}: {name}: 1 of {good.size} values are not finite")
        arrays[name].flat[0] = -np.inf
        assert "not finite" in str(_refused(kind, arrays, config))
    if good.dtype.kind == "i":
        arrays[name] = good.copy()
        arrays[name].flat[0] = -1
        assert str(_refused(kind, arrays, config)).startswith(f"{kind}: {name}: negative values")


@pytest.mark.parametrize(
    ("name", "bad", "problem"),
    [
        ("offsets", np.array([0.0, 2.0, 3.0]), "expected an array of integer dtype, got float64"),
        (
            "topk_logprobs",
            np.full((3, 2), -1, np.int32),
            "expected an array of floating dtype, got int32",
        ),
        ("tokens", np.array([[1, 2, 3]], np.int32), "expected a 1-D array, got shape (1, 3)"),
        ("topk_ids", np.array([1, 2, 3], np.int32), "expected a 2-D array, got shape (3,)"),
    ],
)
def test_array_field_keeps_the_dtype_family_and_rank_of_its_default(
    name: str, bad: np.ndarray, problem: str
) -> None:
    arrays, config = _message("topk_logits")
    arrays[name] = bad
    assert str(_refused("topk_logits", arrays, config)) == f"topk_logits: {name}: {problem}"


# --------------------------------------------------------------------------- kind-specific rules
Mutation = Callable[[dict[str, Any]], None]


def _set(name: str, value: Any) -> Mutation:
    def apply(config: dict[str, Any]) -> None:
        config[name] = json.dumps(value)

    return apply


def _edit_item(index: int, **changes: Any) -> Mutation:
    def apply(config: dict[str, Any]) -> None:
        items = json.loads(config["items"])
        for key, value in changes.items():
            if value is _DROP:
                items[index].pop(key)
            else:
                items[index][key] = value
        config["items"] = json.dumps(items)

    return apply


_DROP = object()


@pytest.mark.parametrize(
    ("kind", "mutate", "expected"),
    [
        ("public_paths", _set("paths", ["only one"]), "public_paths: paths: 1 values for 2"),
        ("public_paths", _set("logprobs", [-1.0]), "public_paths: logprobs: 1 values for 2"),
        ("public_paths", _set("token_counts", [3]), "public_paths: token_counts: 1 values for 2"),
        ("public_paths", _set("logprobs", [-1.0, None]), "public_paths: logprobs[1]: expected"),
        ("public_paths", _set("token_counts", [3, -2]), "public_paths: token_counts[1]: must not"),
        ("public_paths", _set("token_counts", [3, 2.5]), "public_paths: token_counts[1]: expected"),
        (
            "public_paths",
            _set("token_counts", [3, True]),
            "public_paths: token_counts[1]: expected",
        ),
        ("public_paths", _set("item_ids", ["a", "a"]), "public_paths: item_ids[1]: duplicate"),
        (
            "public_paths",
            _set("item_ids", ["a", 7]),
            "public_paths: item_ids[1]: expected a string",
        ),
        ("public_paths", _set("logprobs", [-1.0, 1e400]), "public_paths: logprobs[1]: must be fin"),
        (
            "public_items",
            _set("items", [["not", "a", "record"]]),
            "public_items: items[0]: expected",
        ),
        ("public_items", _edit_item(0, question=_DROP), "public_items: items[0].question: missing"),
        ("public_items", _edit_item(1, question="  "), "public_items: items[1].question: empty"),
        (
            "public_items",
            _edit_item(0, answer_kind="essay"),
            "items[0].answer_kind: 'essay' is not",
        ),
        ("public_items", _edit_item(0, choices="xy"), "public_items: items[0].choices: expected"),
        ("public_items", _edit_item(0, difficulty="hard"), "items[0].difficulty: expected"),
        ("public_items", _edit_item(0, private=True), "items[0].private: not a field"),
        ("public_items", _edit_item(1, choices=[]), "public_items: items[1].choices: option"),
        ("public_items", _edit_item(1, id="pub:1"), "public_items: items[1].id: duplicate"),
        ("eval_report", _set("accuracy", 1.5), "eval_report: accuracy: must lie in [0, 1]"),
        ("eval_report", _set("accuracy", float("nan")), "eval_report: accuracy: must be finite"),
        ("eval_report", _set("n", -1), "eval_report: n: must not be negative"),
        ("eval_report", _set("per_domain", {"add": 2}), "eval_report: per_domain['add']: must lie"),
        ("eval_report", _set("per_domain", {"add": "x"}), "per_domain['add']: expected a number"),
        ("eval_report", _set("selections", [3]), "eval_report: selections[0]: expected an object"),
        ("item_scores", _set("scores", [0.5]), "item_scores: scores: 1 values for 2 item ids"),
        ("item_scores", _set("scores", [0.5, float("inf")]), "item_scores: scores[1]: must be"),
        ("weights", _set("num_examples", -3), "weights: num_examples: must not be negative"),
        ("weights", _set("tensors/__keys__", "layer"), "weights: tensors: expected a list of key"),
        ("weights", _set("tensors/__keys__", ["layer.lora_A"] * 2), "tensors: duplicate keys"),
        ("adapter_update", _set("paths", ["p"]), "adapter_update: paths: 1 values for 2 item"),
        ("global_adapter", _set("logprobs", [0.0]), "global_adapter: logprobs: 1 values for 2"),
        ("topk_logits", _set("path_token_counts", [1]), "topk_logits: path_token_counts: 1 value"),
        ("topk_logits", _set("vocab", ["<pad>", "a"]), "topk_logits: token id beyond"),
    ],
)
def test_kind_specific_problems_are_named(kind: str, mutate: Mutation, expected: str) -> None:
    arrays, config = _message(kind)
    mutate(config)
    assert expected in str(_refused(kind, arrays, config))


def test_topk_offsets_that_do_not_fit_the_tokens_are_refused() -> None:
    arrays, config = _message("topk_logits")
    arrays["offsets"] = np.array([0, 2, 4], np.int64)
    assert "topk_logits: offsets (3,) do not fit 2 items" in str(
        _refused("topk_logits", arrays, config)
    )


def test_weight_tensor_listed_but_not_sent_is_named() -> None:
    arrays, config = _message("weights")
    del arrays["tensors/layer.lora_B"]
    assert str(_refused("weights", arrays, config)) == "weights: tensors/layer.lora_B: missing"


def test_message_that_is_not_two_mappings_is_refused() -> None:
    error = _refused("public_paths", [], {})  # type: ignore[arg-type]
    assert str(error).startswith("public_paths: (message): expected two mappings")


def test_errors_keep_kind_and_field_through_pickling() -> None:
    arrays, config = _message("public_paths")
    config["logprobs"] = json.dumps([-1.0, "x"])
    error = _refused("public_paths", arrays, config)
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, PayloadError) and str(copy) == str(error)
    assert (copy.kind, copy.field) == ("public_paths", "logprobs[1]")


# --------------------------------------------------------------------------- size bound
def test_size_bound_names_size_limit_and_place() -> None:
    payload = _samples()["weights"]
    size = payload.nbytes()
    assert size == wire_size(*payload.split()) > 0
    assert check_size(payload, size, "train/up from client 1") == size
    assert check_size(payload, None, "anywhere") == size
    with pytest.raises(PayloadTooLarge) as caught:
        check_size(payload, size - 1, "train/up from client 1")
    error = caught.value
    assert isinstance(error, PayloadError)
    assert (error.nbytes, error.limit_bytes, error.kind) == (size, size - 1, "weights")
    assert str(error) == (
        f"train/up from client 1: weights payload of {size} bytes exceeds the limit of "
        f"{size - 1} bytes"
    )
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.nbytes, copy.limit_bytes, copy.where) == (size, size - 1, error.where)


def test_size_bound_accepts_a_byte_count_and_rejects_a_negative_limit() -> None:
    assert check_size(100, 100, "x") == 100
    with pytest.raises(PayloadTooLarge, match="x: message payload of 101 bytes"):
        check_size(101, 100, "x")
    with pytest.raises(ValueError, match="limit_bytes"):
        check_size(1, -1, "x")


def test_decode_checks_size_before_parsing() -> None:
    arrays, config = _message("public_paths")
    size = wire_size(arrays, config)
    assert isinstance(decode("public_paths", arrays, config, limit_bytes=size), PublicPaths)
    config["paths"] = "{broken json that is long enough to go over the limit"
    with pytest.raises(PayloadTooLarge, match="down to client 0: public_paths payload"):
        decode("public_paths", arrays, config, limit_bytes=size, where="down to client 0")
