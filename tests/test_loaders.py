"""File and Hugging Face loaders: items, ids, exact error messages, skip-bad accounting."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from lada.tasks.errors import DataFormatError  # noqa: E402
from lada.tasks.loaders import (  # noqa: E402
    detect_format,
    load_bigbench,
    load_file,
    load_gsm8k,
    load_hf,
    load_mc,
    load_svamp,
)

GSM8K_GOOD = {
    "question": "Natalia sold clips to 48 friends in April, and half as many in May. Total?",
    "answer": "In May she sold 48/2 = <<48/2=24>>24 clips.\n"
    "Altogether 48+24 = <<48+24=72>>72 clips.\n#### 1,072",
}


def _jsonl(path: Path, lines: list[Any]) -> Path:
    """Write rows (dicts become JSON, strings are written verbatim) one per line."""
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def test_error_string_format() -> None:
    assert str(DataFormatError("a.jsonl", 3, "answer", "bad")) == "a.jsonl:3: answer: bad"
    assert (
        str(DataFormatError("a.jsonl", None, "file", "no records")) == "a.jsonl: file: no records"
    )
    error = DataFormatError("x.json", 5, "Answer", "oops")
    assert (error.file, error.line, error.field, error.problem) == ("x.json", 5, "Answer", "oops")
    assert isinstance(error, ValueError)


def test_gsm8k_items_strip_calculator_notes(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "gsm.jsonl", [GSM8K_GOOD, {**GSM8K_GOOD, "answer": "x\n#### 3.50"}])
    items = load_gsm8k(path)
    assert [item.id for item in items] == ["gsm:1", "gsm:2"]
    first = items[0]
    assert first.answer == "1072" and first.answer_kind == "numeric"
    assert first.rationale == "In May she sold 48/2 = 24 clips.\nAltogether 48+24 = 72 clips."
    assert "<<" not in first.rationale and "####" not in first.rationale
    assert first.source == "gsm" and first.domain == "gsm"
    assert items[1].answer == "3.5"
    assert detect_format(path) == "gsm8k"


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"question": "q", "answer": "x" , }', "row: invalid JSON (Expecting property name"),
        ('{"question": "q" "answer": "x"}', "row: invalid JSON (Expecting ',' delimiter)"),
        ({"question": "q", "answer": "no final line"}, "answer: no '#### <number>' line"),
        ({"question": "q", "answer": "x\n#### abc"}, "answer: not a number after '####': 'abc'"),
        ({"question": "", "answer": "#### 1"}, "question: empty"),
        ({"question": 5, "answer": "#### 1"}, "question: expected text, got number"),
        ({"answer": "#### 1"}, "question: missing"),
        ([1, 2], "row: expected a JSON object, got array"),
    ],
)
def test_gsm8k_bad_rows_name_file_line_field(tmp_path: Path, bad_line: Any, message: str) -> None:
    path = _jsonl(tmp_path / "data.jsonl", [GSM8K_GOOD, bad_line, GSM8K_GOOD])
    with pytest.raises(DataFormatError) as caught:
        load_file(path, "gsm8k")
    assert str(caught.value).startswith(f"{path}:2: {message}")
    assert caught.value.line == 2


def test_skip_bad_counts_every_bad_row_and_keeps_line_ids(tmp_path: Path) -> None:
    lines: list[Any] = [
        GSM8K_GOOD,
        "{broken",
        "",
        {"question": "q", "answer": "none"},
        GSM8K_GOOD,
        "[]",
    ]
    path = _jsonl(tmp_path / "data.jsonl", lines)
    result = load_file(path, skip_bad=True)
    assert [item.id for item in result.items] == ["data:1", "data:5"]
    assert [error.line for error in result.skipped] == [2, 4, 6]
    assert str(result.skipped[1]) == f"{path}:4: answer: no '#### <number>' line"
    assert result.format == "gsm8k"
    assert load_gsm8k(path, skip_bad=True) == result.items
    with pytest.raises(DataFormatError, match=":2: row: invalid JSON"):
        load_file(path)


def test_undecodable_bytes_and_empty_files(tmp_path: Path) -> None:
    path = tmp_path / "bytes.jsonl"
    path.write_bytes(json.dumps(GSM8K_GOOD).encode() + b"\n\xff\xfe{}\n")
    with pytest.raises(DataFormatError) as caught:
        load_file(path)
    assert str(caught.value) == f"{path}:2: row: not valid UTF-8 (byte 1)"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataFormatError) as caught:
        load_file(empty)
    assert str(caught.value) == f"{empty}: file: no records"
    missing = tmp_path / "missing.jsonl"
    with pytest.raises(DataFormatError, match="no such file"):
        load_file(missing)


def test_auto_format_reports_unrecognised_fields(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "odd.jsonl", [{"prompt": "p", "completion": "c"}])
    with pytest.raises(DataFormatError) as caught:
        load_file(path)
    assert str(caught.value).startswith(
        f"{path}:1: row: cannot tell the format from its fields (completion, prompt)"
    )
    with pytest.raises(DataFormatError, match="format: unknown format 'csv'"):
        load_file(path, "csv")  # type: ignore[arg-type]


def test_svamp_rationale_from_equation_and_answer_without_trailing_zero(tmp_path: Path) -> None:
    rows = [
        {
            "ID": "chal-1",
            "Body": "Jack had 3.0 pens and got 5.0 more.",
            "Question": "How many pens does he have?",
            "Equation": "( 3.0 + 5.0 )",
            "Answer": 8.0,
            "Type": "Addition",
        },
        {"Body": "A", "Question": "Half?", "Equation": "( 1.0 / 2.0 )", "Answer": "0.5"},
    ]
    path = tmp_path / "svamp.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    items = load_svamp(path)
    assert items[0].question == "Jack had 3.0 pens and got 5.0 more. How many pens does he have?"
    assert items[0].rationale == "( 3.0 + 5.0 ) = 8"
    assert items[0].answer == "8"
    assert items[0].meta == {"ID": "chal-1", "Type": "Addition"}
    assert items[1].answer == "0.5" and items[1].id == "svamp:2"
    assert detect_format(path) == "svamp"


def test_svamp_errors_use_array_position(tmp_path: Path) -> None:
    good = {"Body": "b", "Question": "q", "Equation": "( 1 + 1 )", "Answer": 2}
    path = tmp_path / "x.json"
    path.write_text(json.dumps([good] * 4 + [{**good, "Answer": "abc"}]), encoding="utf-8")
    with pytest.raises(DataFormatError) as caught:
        load_file(path)
    assert str(caught.value) == f"{path}:5: Answer: not a number: 'abc'"
    path.write_text(json.dumps([good, {**good, "Answer": True}]), encoding="utf-8")
    with pytest.raises(DataFormatError) as caught:
        load_file(path, "svamp")
    assert str(caught.value) == f"{path}:2: Answer: not a number: True"
    path.write_text('[{"Body": 1,\n "x": ]', encoding="utf-8")
    with pytest.raises(DataFormatError) as caught:
        load_file(path)
    assert str(caught.value) == f"{path}:2: file: invalid JSON (Expecting value)"
    path.write_text('{"a": 1}', encoding="utf-8")
    with pytest.raises(DataFormatError, match="file: expected a JSON array"):
        load_file(path)


def test_multiple_choice_layouts(tmp_path: Path) -> None:
    rows = [
        {
            "question": "Where do you keep milk?",
            "choices": {"label": ["A", "B", "C"], "text": ["fridge", "oven", "roof"]},
            "answerKey": "A",
        },
        {
            "Problem": "a train covers 60 km in 1 h; speed?",
            "options": "a ) 38 , b ) 1,200 , c ) 60 , d ) data inadequate , e ) none",
            "correct": "c",
            "Rationale": '"explanation : 60 / 1 = 60"',
        },
        {
            "question": {
                "stem": "Where is the sun?",
                "choices": [{"label": "A", "text": "sky"}, {"label": "B", "text": "sea"}],
            },
            "answerKey": "A",
        },
        {"question": "2+2?", "choices": ["3", "4", "5"], "answer": 1, "explanation": "2+2=4"},
        {"question": "Colour?", "choices": ["red", "blue"], "answer": "(b)"},
        {"question": "Animal?", "choices": ["cat", "dog"], "answer": "dog"},
        {
            "question": "Science?",
            "choices": {"label": ["1", "2"], "text": ["x", "y"]},
            "answerKey": "2",
        },
    ]
    path = _jsonl(tmp_path / "mc.jsonl", rows)
    items = load_mc(path)
    assert [item.answer for item in items] == ["A", "C", "A", "B", "B", "B", "B"]
    assert all(item.answer_kind == "option" for item in items)
    assert items[0].choices == ("fridge", "oven", "roof")
    assert items[1].choices == ("38", "1,200", "60", "data inadequate", "none")
    assert items[1].rationale == "explanation : 60 / 1 = 60"
    assert items[1].question == "a train covers 60 km in 1 h; speed?"
    assert items[2].question == "Where is the sun?" and items[2].choices == ("sky", "sea")
    assert items[3].rationale == "2+2=4"
    assert detect_format(path) == "mc"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"question": "q", "choices": ["a", "b"], "answer": "F"}, "answer: 'F' is not one of"),
        ({"question": "q", "choices": ["a", "b"], "answer": 7}, "answer: index 7 out of range"),
        ({"question": "q", "choices": ["a"], "answer": "A"}, "choices: 1 options, need 2 to 10"),
        ({"question": "q", "choices": ["a", ""], "answer": "A"}, "choices: option 2 is not"),
        ({"question": "q", "options": "nothing here", "correct": "a"}, "options: cannot read"),
        (
            {"question": "q", "choices": {"label": ["A"], "text": ["x", "y"]}, "answerKey": "A"},
            "choices: 1 labels but 2 texts",
        ),
        ({"question": "q", "choices": ["a", "b"]}, "answer: missing"),
    ],
)
def test_multiple_choice_errors(tmp_path: Path, row: dict[str, Any], message: str) -> None:
    path = _jsonl(tmp_path / "mc.jsonl", [row])
    with pytest.raises(DataFormatError) as caught:
        load_file(path, "mc")
    assert str(caught.value).startswith(f"{path}:1: {message}")


def test_bigbench_task(tmp_path: Path) -> None:
    task = {
        "name": "strategyqa",
        "examples": [
            {
                "input": "Q: Did Aristotle use a laptop?\nA:",
                "target_scores": {"Yes": 0, "No": 1},
                "target": "No. Aristotle died long before laptops existed.",
            },
            {"input": "Pick the sky colour", "target_scores": {"red": 0, "blue": 1}},
            {"input": "Capital of France?", "target": ["Paris", "paris"]},
            {"input": "Is water wet?", "target": "Yes."},
            {"input": "Tie", "target_scores": {"a": 1, "b": 1}},
            {"input": "No target"},
        ],
    }
    folder = tmp_path / "strategyqa"
    folder.mkdir()
    path = folder / "task.json"
    path.write_text(json.dumps(task), encoding="utf-8")
    result = load_file(path, skip_bad=True)
    first, second, third, fourth = result.items
    assert first.id == "strategyqa:1" and first.domain == "strategyqa"
    assert first.question == "Did Aristotle use a laptop?"
    assert (first.answer, first.answer_kind) == ("no", "yesno")
    assert first.rationale == "Aristotle died long before laptops existed."
    assert (second.answer, second.answer_kind, second.choices) == ("B", "option", ("red", "blue"))
    assert (third.answer, third.answer_kind) == ("Paris", "text")
    assert (fourth.answer, fourth.answer_kind, fourth.rationale) == ("yes", "yesno", "")
    assert [str(error) for error in result.skipped] == [
        f"{path}:5: target_scores: no single best target (tie at 1)",
        f"{path}:6: target_scores: missing (need 'target_scores' or 'target')",
    ]
    assert detect_format(path) == "bigbench"
    with pytest.raises(DataFormatError, match=":5: target_scores"):
        load_bigbench(path)


def test_bigbench_examples_must_be_a_list(tmp_path: Path) -> None:
    path = tmp_path / "task.json"
    path.write_text(json.dumps({"examples": {"input": "x"}}), encoding="utf-8")
    with pytest.raises(DataFormatError) as caught:
        load_file(path)
    assert str(caught.value) == f"{path}: examples: expected a list, got object"


def test_source_and_domain_overrides(tmp_path: Path) -> None:
    row_with_domain = {**GSM8K_GOOD, "domain": "arithmetic"}
    path = _jsonl(tmp_path / "data.jsonl", [GSM8K_GOOD, row_with_domain])
    items = load_file(path, source="gsm8k-test", domain="math").items
    assert [item.id for item in items] == ["gsm8k-test:1", "gsm8k-test:2"]
    assert [item.domain for item in items] == ["math", "arithmetic"]


def _hf_rows() -> list[dict[str, Any]]:
    return [
        {"Problem": "p1", "options": "a ) 1 , b ) 2", "correct": "b", "category": "gain"},
        {"Problem": "p2", "options": "a ) 1 , b ) 2", "correct": "z", "category": "physics"},
        {"Problem": "p3", "options": "a ) 3 , b ) 4", "correct": "a", "category": "physics"},
    ]


def test_hf_saved_dataset_uses_the_same_row_parsers(tmp_path: Path) -> None:
    import datasets

    dataset = datasets.Dataset.from_list(_hf_rows())
    dataset.save_to_disk(str(tmp_path / "mathqa"))
    result = load_hf(tmp_path / "mathqa", field_map={"category": "domain"}, skip_bad=True)
    assert [item.id for item in result.items] == ["mathqa:1", "mathqa:3"]
    assert [item.domain for item in result.items] == ["gain", "physics"]
    assert [item.answer for item in result.items] == ["B", "A"]
    assert [str(error) for error in result.skipped] == [
        f"{tmp_path / 'mathqa'}:2: correct: 'z' is not one of the option labels A, B"
    ]
    # The same row in a JSONL file fails with the same field and problem.
    path = _jsonl(tmp_path / "mathqa.jsonl", _hf_rows())
    file_error = load_file(path, skip_bad=True).skipped[0]
    assert (file_error.line, file_error.field, file_error.problem) == (
        result.skipped[0].line,
        result.skipped[0].field,
        result.skipped[0].problem,
    )
    assert load_file(tmp_path / "mathqa", skip_bad=True).format == "mc"


def test_hf_dataset_dict_split_and_parquet(tmp_path: Path) -> None:
    import datasets

    rows = [{"question": "q1", "answer": "#### 1"}, {"question": "q2", "answer": "#### 2"}]
    dataset = datasets.Dataset.from_list(rows)
    datasets.DatasetDict({"train": dataset, "test": dataset}).save_to_disk(str(tmp_path / "gsm"))
    with pytest.raises(DataFormatError) as caught:
        load_hf(tmp_path / "gsm")
    assert str(caught.value) == (
        f"{tmp_path / 'gsm'}: split: no split given; choose one of ['train', 'test']"
    )
    test_items = load_hf(tmp_path / "gsm", "test").items
    assert [item.id for item in test_items] == ["gsm:test:1", "gsm:test:2"]
    assert [item.answer for item in test_items] == ["1", "2"]
    dataset.to_parquet(str(tmp_path / "gsm.parquet"))
    parquet = load_hf(tmp_path / "gsm.parquet", cache_dir=tmp_path / "cache")
    assert [item.answer for item in parquet.items] == ["1", "2"]
    assert parquet.format == "gsm8k"


def test_hf_hub_name_offline_is_a_data_format_error(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError) as caught:
        load_hf("lada-test/not-a-real-dataset", "train", cache_dir=tmp_path)
    assert caught.value.field == "dataset"
    assert caught.value.file == "lada-test/not-a-real-dataset"


_FIELD_NAMES = [
    "question",
    "answer",
    "choices",
    "options",
    "answerKey",
    "correct",
    "Body",
    "Question",
    "Equation",
    "Answer",
    "input",
    "target",
    "target_scores",
    "label",
    "text",
    "domain",
]
# Plausible field values mixed with junk, so fuzzed records reach deep into every row parser.
_PLAUSIBLE = [
    "",
    "A",
    "b",
    "(c)",
    "Yes",
    "no",
    "#### 4",
    "x\n#### 1,2",
    "( 1 + 2 )",
    "a ) 1 , b ) 2",
]
_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 12)
    | st.floats()
    | st.sampled_from(_PLAUSIBLE)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(_FIELD_NAMES), children, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_data_format_errors(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "data.jsonl"
    path.write_bytes(data)
    try:
        result = load_file(path, skip_bad=True)
    except DataFormatError:
        return
    assert all(isinstance(error, DataFormatError) for error in result.skipped)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.dictionaries(st.sampled_from(_FIELD_NAMES), _JSON_VALUES, max_size=6), max_size=3
    ),
    format=st.sampled_from(["auto", "gsm8k", "svamp", "mc", "bigbench"]),
)
def test_arbitrary_records_raise_only_data_format_errors(
    tmp_path_factory: pytest.TempPathFactory, rows: list[dict[str, Any]], format: str
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "rows.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows), encoding="utf-8")
    try:
        result = load_file(path, format)  # type: ignore[arg-type]
    except DataFormatError as error:
        assert error.file == str(path)
        return
    assert len(result.items) == len(rows)
