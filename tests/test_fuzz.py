"""Fuzzing: answer checking never raises, loaders raise nothing but `DataFormatError`."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lada.tasks import loaders
from lada.tasks.answers import (
    check_answer,
    extract_answer,
    format_number,
    is_correct,
    normalize_numeric,
)
from lada.tasks.errors import DataFormatError
from lada.tasks.item import ANSWER_KINDS, ReasoningItem

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FILES = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------- answer text
FRAGMENTS = [
    "####",
    " ",
    "\n",
    "\t",
    "The answer is ",
    "Answer: ",
    "answer =",
    "\\boxed{",
    "\\fbox{",
    "{",
    "}",
    "$",
    "**",
    "-",
    "+",
    "\u2212",
    ",",
    ".",
    "/",
    "%",
    "\\%",
    "\\frac{",
    "\\dfrac{",
    "e",
    "E",
    "e+",
    "0",
    "1",
    "7",
    "3/4",
    "5/0",
    "0/0",
    "1,234",
    "12,34",
    "0.5",
    ".5",
    "1e999",
    "1e-999",
    "nan",
    "inf",
    "Infinity",
    "(",
    ")",
    "[",
    "]",
    "A",
    "b",
    "(c)",
    "J",
    "option ",
    "choice ",
    "yes",
    "No",
    "TRUE",
    "false",
    "\u00e9",
    "\U0001f600",
    "\x00",
    "9" * 40,
    "1" * 400,
    "7" * 5000,
    "1" * 4400 + "/" + "3" * 4400,
]
answer_text = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=3), max_size=12).map("".join),
)
kinds = st.sampled_from(ANSWER_KINDS)
choice_lists = st.lists(answer_text, max_size=5)


@FAST
@given(path=answer_text, kind=kinds, choices=choice_lists)
def test_extract_answer_never_raises(path: str, kind: str, choices: list[str]) -> None:
    answer = extract_answer(path, kind, choices)  # type: ignore[arg-type]
    assert answer is None or isinstance(answer, str)
    if answer is not None and kind == "numeric":
        assert normalize_numeric(answer) is not None  # what it read back is a finite number
    if answer is not None and kind == "option":
        assert len(answer) == 1 and answer.isupper()
    if answer is not None and kind == "yesno":
        assert answer in ("yes", "no")


@FAST
@example("1" * 4400 + "/3")  # int() refuses over 4300 digits (found by this test)
@example("1" * 400 + "/1")  # the quotient overflows a float
@example(10**400)  # float() of a huge int overflows
@given(
    value=st.one_of(
        answer_text,
        st.integers(),
        st.integers(min_value=10**300, max_value=10**400),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.none(),
        st.lists(st.integers(), max_size=2),
    )
)
def test_normalize_numeric_never_raises_and_is_finite(value: Any) -> None:
    number = normalize_numeric(value)
    assert number is None or (isinstance(number, float) and math.isfinite(number))


@FAST
@given(value=st.floats(allow_nan=False, allow_infinity=False))
def test_format_number_reads_back(value: float) -> None:
    text = format_number(value)
    again = normalize_numeric(text)
    assert again is not None and math.isclose(again, value, rel_tol=1e-11, abs_tol=1e-300)


@FAST
@given(predicted=st.none() | answer_text, gold=answer_text, kind=kinds)
def test_check_answer_never_raises(predicted: str | None, gold: str, kind: str) -> None:
    assert check_answer(predicted, gold, kind) in (True, False)  # type: ignore[arg-type]


@FAST
@given(path=answer_text, gold=answer_text, kind=kinds, choices=choice_lists)
def test_is_correct_never_raises(path: str, gold: str, kind: str, choices: list[str]) -> None:
    if not gold.strip() or (kind == "option" and not choices):
        return  # not a valid item
    item = ReasoningItem("f:1", "d", "Q?", gold, kind, choices=tuple(choices))  # type: ignore[arg-type]
    assert is_correct(path, item) in (True, False)


@FAST
@given(value=answer_text, kind=kinds)
def test_a_path_stating_the_gold_answer_is_correct(value: str, kind: str) -> None:
    """Whatever `extract_answer` reads from `#### gold` is checked correct against gold."""
    gold = value.strip()
    if not gold or "\n" in gold or (kind == "numeric" and normalize_numeric(gold) is None):
        return  # not a valid gold answer of this kind
    predicted = extract_answer(f"some steps\n#### {gold}\n", kind)  # type: ignore[arg-type]
    if predicted is not None and kind in ("numeric", "text"):
        assert check_answer(predicted, gold, kind)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- loader input
FIELD_NAMES = [
    "question",
    "answer",
    "Body",
    "Question",
    "Equation",
    "Answer",
    "choices",
    "options",
    "answerKey",
    "correct",
    "input",
    "target",
    "target_scores",
    "rationale",
    "explanation",
    "Rationale",
    "domain",
    "stem",
    "label",
    "text",
    "Problem",
    "ID",
    "Type",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**1000),
    st.floats(allow_nan=True, allow_infinity=True),
    answer_text,
    st.sampled_from(["#### 5", "x\n#### 1,234", "a ) 1 , b ) 2", "Yes. Because", "B", "(b)"]),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=5), children, max_size=4),
    ),
    max_leaves=12,
)
rows = st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=6)
records = st.one_of(rows, json_values)


def _dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


def _corrupt(text: str, data: st.DataObject) -> bytes:
    raw = text.encode("utf-8", "surrogatepass")
    if raw and data.draw(st.booleans(), label="corrupt"):
        at = data.draw(st.integers(0, len(raw) - 1), label="at")
        junk = data.draw(st.binary(min_size=1, max_size=4), label="junk")
        raw = raw[:at] + junk + raw[at + 1 :]
    return raw


@st.composite
def file_contents(draw: st.DrawFn) -> tuple[str, bytes]:
    """A file name suffix and its bytes: JSONL, a JSON array, a BIG-bench task, or noise."""
    shape = draw(st.sampled_from(["jsonl", "json_array", "bigbench", "bytes"]))
    if shape == "bytes":
        return draw(st.sampled_from([".jsonl", ".json", ".txt"])), draw(st.binary(max_size=200))
    data = draw(st.data())
    if shape == "jsonl":
        lines = [_dumps(r) for r in draw(st.lists(records, max_size=5))]
        separator = draw(st.sampled_from(["\n", "\r\n", "\n\n"]))
        bom = draw(st.sampled_from(["", "\ufeff"]))
        return ".jsonl", _corrupt(bom + separator.join(lines), data)
    if shape == "json_array":
        return ".json", _corrupt(_dumps(draw(st.lists(records, max_size=5))), data)
    task = {"examples": draw(st.lists(records, max_size=5) | json_values)}
    if draw(st.booleans()):
        task["name"] = draw(json_values)
    return ".json", _corrupt(_dumps(task), data)


@contextmanager
def _written(suffix: str, content: bytes, stem: str = "data") -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{stem}{suffix}"
        path.write_bytes(content)
        yield path


def _only_data_errors(path: Path, call: Callable[[], Any]) -> Any:
    """Run a loader: it returns, or raises `DataFormatError` naming this file."""
    try:
        result = call()
    except DataFormatError as error:
        assert error.file == str(path)
        assert error.line is None or error.line >= 1
        return None
    return result


FILE_FORMATS = ["auto", "gsm8k", "svamp", "mc", "bigbench"]


@FILES
@given(content=file_contents(), format=st.sampled_from(FILE_FORMATS), skip_bad=st.booleans())
def test_load_file_raises_only_data_format_errors(
    content: tuple[str, bytes], format: str, skip_bad: bool
) -> None:
    suffix, raw = content
    with _written(suffix, raw) as path:
        result = _only_data_errors(path, lambda: loaders.load_file(path, format, skip_bad))  # type: ignore[arg-type]
        if result is not None:
            assert all(isinstance(it, ReasoningItem) for it in result.items)
            assert all(isinstance(e, DataFormatError) for e in result.skipped)
            assert skip_bad or not result.skipped
            ids = [it.id for it in result.items]
            assert len(set(ids)) == len(ids)


@FILES
@given(content=file_contents())
def test_detect_format_raises_only_data_format_errors(content: tuple[str, bytes]) -> None:
    suffix, raw = content
    with _written(suffix, raw) as path:
        detected = _only_data_errors(path, lambda: loaders.detect_format(path))
        assert detected is None or detected in loaders.ROW_FORMATS


SHORTCUTS = [loaders.load_gsm8k, loaders.load_svamp, loaders.load_mc, loaders.load_bigbench]


@FILES
@given(
    content=file_contents(),
    loader=st.sampled_from(SHORTCUTS),
    skip_bad=st.booleans(),
)
def test_format_loaders_raise_only_data_format_errors(
    content: tuple[str, bytes], loader: Callable[..., list[ReasoningItem]], skip_bad: bool
) -> None:
    suffix, raw = content
    with _written(suffix, raw, stem="task") as path:
        items = _only_data_errors(path, lambda: loader(path, skip_bad=skip_bad))
        assert items is None or all(isinstance(it, ReasoningItem) for it in items)


PARSERS = list(loaders.ROW_PARSERS.items())


@FAST
@given(row=rows, parser=st.sampled_from(PARSERS))
def test_row_parsers_raise_only_data_format_errors(
    row: dict[str, Any], parser: tuple[str, Callable[..., ReasoningItem]]
) -> None:
    name, parse = parser
    place = loaders.RowPlace("rows.jsonl", 3, "rows", "default")
    try:
        item = parse(row, place)
    except DataFormatError as error:
        assert (error.file, error.line) == ("rows.jsonl", 3)
        return
    assert isinstance(item, ReasoningItem) and item.id == "rows:3"


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(rows_or_noise=[{"question": [None, None]}], suffix=".jsonl")  # pyarrow fails on it
@given(
    rows_or_noise=st.one_of(st.lists(rows, min_size=1, max_size=3), st.binary(max_size=60)),
    suffix=st.sampled_from([".jsonl", ".json", ".parquet", ".arrow"]),
)
def test_load_hf_on_local_files_raises_only_data_format_errors(
    rows_or_noise: list[dict[str, Any]] | bytes, suffix: str
) -> None:
    if isinstance(rows_or_noise, bytes):
        raw = rows_or_noise
    elif suffix == ".json":
        raw = _dumps(rows_or_noise).encode()
    else:
        raw = "\n".join(_dumps(r) for r in rows_or_noise).encode()
    with _written(suffix, raw) as path, tempfile.TemporaryDirectory() as cache:
        result = _only_data_errors(path, lambda: loaders.load_hf(path, cache_dir=cache))
        assert result is None or all(isinstance(it, ReasoningItem) for it in result.items)


def test_a_row_the_dataset_library_cannot_read_is_reported_with_its_line() -> None:
    raw = _dumps({"question": [None, None]}).encode()  # pyarrow cannot read this row back
    with _written(".jsonl", raw) as path, tempfile.TemporaryDirectory() as cache:
        result = loaders.load_hf(path, cache_dir=cache, skip_bad=True)
        assert result.items == []
        assert [(e.line, e.field) for e in result.skipped] == [(1, "row")]
        assert "cannot read this row" in str(result.skipped[0])
        assert _only_data_errors(path, lambda: loaders.detect_format(path)) is None
