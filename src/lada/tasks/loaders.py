"""Reasoning items from files and Hugging Face datasets.

Formats (row layouts) and containers are separate ideas here: a *row parser* turns one record into
a `ReasoningItem` (GSM8K, SVAMP, multiple choice, BIG-bench example), and a *container* yields
records with their 1-based line (JSONL line, JSON array index + 1, BIG-bench example index + 1,
dataset row index + 1). Every container feeds the same row parsers, so a bad row reads the same
whether it came from a file or a `datasets.Dataset`.

Bad input raises only `lada.tasks.errors.DataFormatError`, naming file, line and field. With
`skip_bad=True` bad rows are skipped and returned in `LoadResult.skipped` (the per-format
shortcuts log how many), so nothing disappears without a trace. Item ids are
`f"{source}:{line}"`, stable as long as the file is.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from lada.tasks.answers import format_number, normalize_numeric
from lada.tasks.errors import DataFormatError
from lada.tasks.item import ReasoningItem
from lada.tasks.prompts import ANSWER_MARKER, OPTION_LETTERS

logger = logging.getLogger(__name__)

RowFormat = Literal["gsm8k", "svamp", "mc", "bigbench"]
FileFormat = Literal["auto", "gsm8k", "svamp", "mc", "bigbench"]
ROW_FORMATS: tuple[str, ...] = get_args(RowFormat)
HF_SUFFIXES = (".parquet", ".arrow")

_GSM8K_FINAL = re.compile(r"^[ \t]*" + re.escape(ANSWER_MARKER) + r"[ \t]*(.*?)[ \t]*$", re.M)
_CALCULATOR_NOTE = re.compile(r"<<[^<>\n]*>>")


@dataclass(frozen=True)
class RowPlace:
    """Where a row came from, and the defaults it inherits from its file."""

    file: str
    line: int
    source: str
    domain: str

    def error(self, field_name: str, problem: str) -> DataFormatError:
        return DataFormatError(self.file, self.line, field_name, problem)

    @property
    def item_id(self) -> str:
        return f"{self.source}:{self.line}"


@dataclass
class LoadResult:
    """Items read from one source, the bad rows skipped on the way, and the row format used."""

    items: list[ReasoningItem]
    skipped: list[DataFormatError] = field(default_factory=list)
    format: str = ""


RowParser = Callable[[Mapping[str, Any], RowPlace], ReasoningItem]
# A container yields (line, record) pairs; a record that could not even be decoded is yielded as
# the DataFormatError saying why, so skip_bad can step over it.
Records = Iterable[tuple[int, Any]]


# ---------------------------------------------------------------- row parsers


def parse_gsm8k_row(row: Mapping[str, Any], place: RowPlace) -> ReasoningItem:
    """GSM8K: `question`, and `answer` = worked solution ending in a `#### <number>` line.

    Calculator notes `<<48/2=24>>` are removed from the rationale; the answer is stored in
    canonical form (commas removed, no trailing `.0`).
    """
    question = _text(row, "question", place)
    solution = _text(row, "answer", place)
    finals = list(_GSM8K_FINAL.finditer(solution))
    if not finals:
        raise place.error("answer", f"no '{ANSWER_MARKER} <number>' line")
    final = finals[-1]
    value = normalize_numeric(final.group(1))
    if value is None:
        raise place.error("answer", f"not a number after '{ANSWER_MARKER}': {final.group(1)!r}")
    rationale = _CALCULATOR_NOTE.sub("", solution[: final.start()])
    return _item(
        place,
        row,
        question=question,
        answer=format_number(value),
        answer_kind="numeric",
        rationale=_clean_lines(rationale),
    )


def parse_svamp_row(row: Mapping[str, Any], place: RowPlace) -> ReasoningItem:
    """SVAMP: `Body` + `Question`, `Equation` rendered as the rationale, numeric `Answer`."""
    body = _text(row, "Body", place, required=False)
    question = _text(row, "Question", place)
    equation = _text(row, "Equation", place, required=False)
    value = _number(row, "Answer", place)
    answer = format_number(value)
    rationale = f"{' '.join(equation.split())} = {answer}" if equation.strip() else ""
    meta = {key: row[key] for key in ("ID", "Type") if isinstance(row.get(key), str | int)}
    return _item(
        place,
        row,
        question=f"{body.strip()} {question.strip()}".strip(),
        answer=answer,
        answer_kind="numeric",
        rationale=rationale,
        meta=meta,
    )


def parse_mc_row(row: Mapping[str, Any], place: RowPlace) -> ReasoningItem:
    """Multiple choice: a question, its options and the correct option.

    Question: `question` (text, or CommonsenseQA's `{"stem", "choices"}`), `Problem`, `stem`.
    Options: `choices` as a list of strings, `{"label": [...], "text": [...]}` or a list of
    `{"label", "text"}`; or MathQA's `options` string `"a ) 5 , b ) 6 , ..."` (or list).
    Correct option: `answer` / `answerKey` / `correct` as a label (`"B"`, `"b"`, `"(b)"`), the
    option text itself, or an integer 0-based index. Rationale: `rationale` / `explanation` /
    `Rationale`. The answer is stored as the option letter A, B, ...
    """
    question_name = _first_present(row, ("question", "Problem", "problem", "stem")) or "question"
    raw_question = row.get(question_name)
    nested_choices: Any = None
    if isinstance(raw_question, Mapping):
        nested_choices = raw_question.get("choices")
        raw_question = raw_question.get("stem")
        question_name = f"{question_name}.stem"
    if not isinstance(raw_question, str) or not raw_question.strip():
        raise place.error(question_name, _missing_or_type(raw_question, "text"))

    labels, texts = _choices(row, nested_choices, place)
    answer_name = _first_present(row, ("answer", "answerKey", "correct")) or "answer"
    index = _answer_index(row.get(answer_name), labels, texts, answer_name, place)
    rationale_name = _first_present(row, ("rationale", "explanation", "Rationale"))
    rationale = ""
    if rationale_name is not None:
        rationale = _text(row, rationale_name, place, required=False).strip().strip('"')
    return _item(
        place,
        row,
        question=raw_question.strip(),
        answer=OPTION_LETTERS[index],
        answer_kind="option",
        rationale=_clean_lines(rationale),
        choices=tuple(texts),
    )


def parse_bigbench_row(row: Mapping[str, Any], place: RowPlace) -> ReasoningItem:
    """BIG-bench example: `input`, and `target_scores` (best key wins) and/or `target`.

    Yes/No targets give a yes/no item; other `target_scores` keys become options; a lone
    non-yes/no `target` gives a text answer. When `target` restates the answer followed by an
    explanation (StrategyQA: "Yes. Hydrogen ..."), the explanation becomes the rationale.
    """
    question = _text(row, "input", place).strip()
    question = re.sub(r"^Q:\s*", "", question)
    question = re.sub(r"\s*\bA:\s*$", "", question).strip()
    target = _bigbench_target(row, place)
    scores = row.get("target_scores")
    if scores is None and target is None:
        raise place.error("target_scores", "missing (need 'target_scores' or 'target')")
    if scores is not None:
        keys, best = _best_target(scores, place)
        if {_yes_no_word(key) for key in keys} == {"yes", "no"}:
            answer = _yes_no_word(keys[best]) or ""
            return _item(
                place,
                row,
                question=question,
                answer=answer,
                answer_kind="yesno",
                rationale=_explanation_after(target, answer),
            )
        if len(keys) > len(OPTION_LETTERS):
            raise place.error(
                "target_scores", f"{len(keys)} options, at most {len(OPTION_LETTERS)} supported"
            )
        return _item(
            place,
            row,
            question=question,
            answer=OPTION_LETTERS[best],
            answer_kind="option",
            choices=tuple(keys),
        )
    assert target is not None
    word = _yes_no_word(target.split(maxsplit=1)[0]) if target.split() else None
    if word is not None:
        return _item(
            place,
            row,
            question=question,
            answer=word,
            answer_kind="yesno",
            rationale=_explanation_after(target, word),
        )
    return _item(place, row, question=question, answer=target.strip(), answer_kind="text")


ROW_PARSERS: dict[str, RowParser] = {
    "gsm8k": parse_gsm8k_row,
    "svamp": parse_svamp_row,
    "mc": parse_mc_row,
    "bigbench": parse_bigbench_row,
}


def detect_row_format(row: Mapping[str, Any]) -> str | None:
    """The row format a record's field names point to, or None when they fit none."""
    keys = set(row)
    if {"Body", "Question", "Answer"} <= keys:
        return "svamp"
    if "input" in keys and keys & {"target_scores", "target"}:
        return "bigbench"
    if keys & {"choices", "options", "answerKey", "correct"}:
        return "mc"
    if "question" in keys and "answer" in keys:
        return "gsm8k"
    return None


# ---------------------------------------------------------------- entry points


def load_file(
    path: str | Path,
    format: FileFormat = "auto",
    skip_bad: bool = False,
    *,
    source: str | None = None,
    domain: str | None = None,
) -> LoadResult:
    """Read a data file (or a Hugging Face dataset saved locally) into reasoning items.

    `path` is a `.jsonl` file (one record per line), a `.json` file (an array of records, or a
    BIG-bench task with `examples`), or a directory saved with `Dataset.save_to_disk` / a
    `.parquet` / `.arrow` file (read through `load_hf`). `format="auto"` picks the row format
    from the first record's fields. `source` (default: the file's stem, or the BIG-bench task's
    directory) prefixes item ids; `domain` (default: the row's `domain` field, else the task
    name, else `source`) labels items for non-IID splits.

    Raises DataFormatError for any bad input. With `skip_bad=True` only bad rows are skipped and
    reported in `LoadResult.skipped`; a file that cannot be read at all still raises.
    """
    file_path = Path(path)
    file_name = str(path)
    _check_format(format, file_name)
    if not file_path.exists():
        raise DataFormatError(file_name, None, "file", "no such file or directory")
    if file_path.is_dir() or file_path.suffix.lower() in HF_SUFFIXES:
        return load_hf(file_path, format=format, skip_bad=skip_bad, source=source, domain=domain)
    default_source = file_path.stem
    default_domain: str | None = None
    if file_path.suffix.lower() == ".json":
        document = _read_json(file_path, file_name)
        if isinstance(document, Mapping) and "examples" in document:
            records, task_name = _bigbench_records(document, file_name)
            if file_path.stem == "task" and file_path.parent.name:
                default_source = file_path.parent.name
            default_domain = task_name
            if format == "auto":
                format = "bigbench"
        elif isinstance(document, list):
            records = list(enumerate(document, start=1))
        else:
            raise DataFormatError(
                file_name,
                None,
                "file",
                "expected a JSON array of records or a BIG-bench task with 'examples'",
            )
    else:
        records = list(_jsonl_records(file_path, file_name))
    resolved_source = source or default_source
    return _parse_records(
        records,
        format,
        skip_bad,
        file_name=file_name,
        source=resolved_source,
        domain=domain or default_domain or resolved_source,
    )


def load_hf(
    name_or_path: str | Path,
    split: str | None = None,
    *,
    format: FileFormat = "auto",
    field_map: Mapping[str, str] | None = None,
    skip_bad: bool = False,
    source: str | None = None,
    domain: str | None = None,
    cache_dir: str | Path | None = None,
) -> LoadResult:
    """Read a Hugging Face dataset into reasoning items, through the same row parsers.

    `name_or_path` is a local path (a directory from `save_to_disk`, or a `.json`, `.jsonl`,
    `.parquet` or `.arrow` file) or a hub name (needs network; nothing is fetched when
    `HF_HUB_OFFLINE=1`). `split` picks one split of a DatasetDict (optional when there is only
    one). `field_map` renames columns before parsing, e.g. `{"Problem": "question"}`, and may map
    a column to `domain`. Line numbers are row index + 1. `cache_dir` is where `datasets` puts
    its Arrow cache for json/parquet files. Raises DataFormatError for any bad input, including
    a dataset that cannot be loaded.
    """
    import datasets

    file_name = str(name_or_path)
    _check_format(format, file_name)
    local = Path(name_or_path)
    cache = None if cache_dir is None else str(cache_dir)
    if local.exists():
        dataset = _read_local_dataset(local, file_name, cache)
        base_name = local.stem if local.is_file() else local.name
    else:
        try:
            dataset = datasets.load_dataset(file_name, split=split, cache_dir=cache)
        except Exception as error:  # any failure to fetch is reported as bad input, with cause
            raise DataFormatError(
                file_name,
                None,
                "dataset",
                f"cannot load from the Hugging Face hub ({type(error).__name__}: {error}); "
                "give a local path, or go online without HF_HUB_OFFLINE=1",
            ) from error
        base_name = file_name
    if isinstance(dataset, datasets.DatasetDict):
        split = _pick_split(dataset, split, file_name)
        dataset = dataset[split]
    default_source = f"{base_name}:{split}" if split else base_name
    records = _dataset_records(dataset, file_name, dict(field_map or {}))
    resolved_source = source or default_source
    return _parse_records(
        records,
        format,
        skip_bad,
        file_name=file_name,
        source=resolved_source,
        domain=domain or base_name,
    )


def detect_format(path: str | Path) -> str:
    """The row format `load_file(path, "auto")` would use: gsm8k, svamp, mc or bigbench."""
    file_path = Path(path)
    file_name = str(path)
    if not file_path.exists():
        raise DataFormatError(file_name, None, "file", "no such file or directory")
    if file_path.is_dir() or file_path.suffix.lower() in HF_SUFFIXES:
        import datasets

        dataset = _read_local_dataset(file_path, file_name, None)
        if isinstance(dataset, datasets.DatasetDict):
            dataset = dataset[_pick_split(dataset, None, file_name)]
        return _detect(_dataset_records(dataset, file_name, {}), file_name)
    if file_path.suffix.lower() == ".json":
        document = _read_json(file_path, file_name)
        if isinstance(document, Mapping) and "examples" in document:
            return "bigbench"
        if isinstance(document, list):
            return _detect(enumerate(document, start=1), file_name)
        raise DataFormatError(
            file_name,
            None,
            "file",
            "expected a JSON array of records or a BIG-bench task with 'examples'",
        )
    return _detect(_jsonl_records(file_path, file_name), file_name)


def load_gsm8k(
    path: str | Path,
    *,
    skip_bad: bool = False,
    source: str | None = None,
    domain: str | None = None,
) -> list[ReasoningItem]:
    """GSM8K JSONL (`question`, `answer` with `#### N`); see `load_file`."""
    return _items_logging_skips(load_file(path, "gsm8k", skip_bad, source=source, domain=domain))


def load_svamp(
    path: str | Path,
    *,
    skip_bad: bool = False,
    source: str | None = None,
    domain: str | None = None,
) -> list[ReasoningItem]:
    """SVAMP JSON (array of `Body`, `Question`, `Equation`, `Answer`); see `load_file`."""
    return _items_logging_skips(load_file(path, "svamp", skip_bad, source=source, domain=domain))


def load_mc(
    path: str | Path,
    *,
    skip_bad: bool = False,
    source: str | None = None,
    domain: str | None = None,
) -> list[ReasoningItem]:
    """Multiple-choice JSONL (see `parse_mc_row` for accepted fields); see `load_file`."""
    return _items_logging_skips(load_file(path, "mc", skip_bad, source=source, domain=domain))


def load_bigbench(
    path: str | Path,
    *,
    skip_bad: bool = False,
    source: str | None = None,
    domain: str | None = None,
) -> list[ReasoningItem]:
    """BIG-bench `task.json` (`examples` with `input`, `target_scores`/`target`)."""
    return _items_logging_skips(load_file(path, "bigbench", skip_bad, source=source, domain=domain))


# ---------------------------------------------------------------- containers


def _parse_records(
    records: Records,
    format: str,
    skip_bad: bool,
    *,
    file_name: str,
    source: str,
    domain: str,
) -> LoadResult:
    items: list[ReasoningItem] = []
    skipped: list[DataFormatError] = []
    parser: RowParser | None = None if format == "auto" else ROW_PARSERS[format]
    seen_any = False
    for line, record in records:
        seen_any = True
        try:
            if isinstance(record, DataFormatError):
                raise record
            if not isinstance(record, Mapping):
                raise DataFormatError(
                    file_name, line, "row", f"expected a JSON object, got {_json_type(record)}"
                )
            if parser is None:
                format = detect_row_format(record) or ""
                if not format:
                    names = ", ".join(sorted(map(str, record))) or "none"
                    raise DataFormatError(
                        file_name,
                        line,
                        "row",
                        f"cannot tell the format from its fields ({names}); "
                        f"name one of {', '.join(ROW_FORMATS)}",
                    )
                parser = ROW_PARSERS[format]
            place = RowPlace(file_name, line, source, domain)
            items.append(parser(record, place))
        except DataFormatError as error:
            if not skip_bad:
                raise
            skipped.append(error)
    if not seen_any:
        raise DataFormatError(file_name, None, "file", "no records")
    return LoadResult(items=items, skipped=skipped, format=format)


def _jsonl_records(file_path: Path, file_name: str) -> Iterator[tuple[int, Any]]:
    try:
        raw = file_path.read_bytes()
    except OSError as error:
        raise DataFormatError(file_name, None, "file", f"cannot read ({error.strerror})") from None
    for line_number, raw_line in enumerate(raw.split(b"\n"), start=1):
        if line_number == 1:
            raw_line = raw_line.removeprefix(b"\xef\xbb\xbf")
        if not raw_line.strip():
            continue
        try:
            text = raw_line.decode("utf-8")
        except UnicodeDecodeError as error:
            yield (
                line_number,
                DataFormatError(
                    file_name, line_number, "row", f"not valid UTF-8 (byte {error.start + 1})"
                ),
            )
            continue
        yield line_number, _decode_json(text, file_name, line_number, "row")


def _decode_json(text: str, file_name: str, line: int, field_name: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        return DataFormatError(file_name, line, field_name, f"invalid JSON ({error.msg})")
    except (ValueError, RecursionError) as error:  # e.g. too many digits, too deep nesting
        return DataFormatError(file_name, line, field_name, f"invalid JSON ({error})")


def _dataset_records(
    dataset: Any, file_name: str, rename: Mapping[str, str]
) -> Iterator[tuple[int, Any]]:
    """Rows of a `datasets.Dataset` (columns renamed), line = row index + 1.

    A row the library itself cannot read (pyarrow fails on some column types, e.g. a list of
    nulls) is yielded as the DataFormatError saying why, so skip_bad can step over it. Rows are
    streamed; after such a failure the rest are read one by one (the stream is broken).
    """
    stream: Iterator[Any] | None = iter(dataset)
    for index in range(len(dataset)):
        try:
            row = next(stream) if stream is not None else dataset[index]
        except StopIteration:
            return
        except Exception as error:  # pyarrow/datasets raise many types; the cause is kept
            stream = None
            problem = f"cannot read this row ({type(error).__name__}: {error})"
            yield index + 1, DataFormatError(file_name, index + 1, "row", problem)
            continue
        yield index + 1, {rename.get(key, key): value for key, value in row.items()}


def _read_json(file_path: Path, file_name: str) -> Any:
    try:
        raw = file_path.read_bytes()
    except OSError as error:
        raise DataFormatError(file_name, None, "file", f"cannot read ({error.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataFormatError(file_name, line, "file", "not valid UTF-8") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DataFormatError(
            file_name, error.lineno, "file", f"invalid JSON ({error.msg})"
        ) from None
    except (ValueError, RecursionError) as error:
        raise DataFormatError(file_name, None, "file", f"invalid JSON ({error})") from None


def _bigbench_records(
    document: Mapping[str, Any], file_name: str
) -> tuple[list[tuple[int, Any]], str | None]:
    examples = document.get("examples")
    if not isinstance(examples, list):
        raise DataFormatError(
            file_name, None, "examples", f"expected a list, got {_json_type(examples)}"
        )
    name = document.get("name")
    task_name = name.strip() if isinstance(name, str) and name.strip() else None
    return list(enumerate(examples, start=1)), task_name


def _read_local_dataset(local: Path, file_name: str, cache_dir: str | None) -> Any:
    import datasets

    suffix = local.suffix.lower()
    try:
        if local.is_dir():
            return datasets.load_from_disk(str(local))
        if suffix == ".parquet":
            return datasets.Dataset.from_parquet(str(local), cache_dir=cache_dir)
        if suffix in (".json", ".jsonl"):
            return datasets.Dataset.from_json(str(local), cache_dir=cache_dir)
        if suffix == ".arrow":
            return datasets.Dataset.from_file(str(local))
    except Exception as error:  # datasets raises many types; the cause is kept in the message
        raise DataFormatError(
            file_name,
            None,
            "file",
            f"cannot read as a Hugging Face dataset ({type(error).__name__}: {error})",
        ) from error
    raise DataFormatError(
        file_name, None, "file", f"unsupported file type {suffix!r} for a Hugging Face dataset"
    )


def _pick_split(dataset: Mapping[str, Any], split: str | None, file_name: str) -> str:
    names = list(dataset)
    if split is None and len(names) == 1:
        return names[0]
    if split not in names:
        wanted = "no split given" if split is None else f"no split {split!r}"
        raise DataFormatError(file_name, None, "split", f"{wanted}; choose one of {names}")
    return split


def _detect(records: Iterable[tuple[int, Any]], file_name: str) -> str:
    for line, record in records:
        if isinstance(record, DataFormatError):
            raise record
        if not isinstance(record, Mapping):
            raise DataFormatError(
                file_name, line, "row", f"expected a JSON object, got {_json_type(record)}"
            )
        format = detect_row_format(record)
        if format is None:
            names = ", ".join(sorted(map(str, record))) or "none"
            raise DataFormatError(
                file_name, line, "row", f"cannot tell the format from its fields ({names})"
            )
        return format
    raise DataFormatError(file_name, None, "file", "no records")


def _items_logging_skips(result: LoadResult) -> list[ReasoningItem]:
    if result.skipped:
        logger.warning(
            "skipped %d bad record(s); first: %s", len(result.skipped), result.skipped[0]
        )
    return result.items


def _check_format(format: str, file_name: str) -> None:
    if format != "auto" and format not in ROW_FORMATS:
        raise DataFormatError(
            file_name, None, "format", f"unknown format {format!r}; use auto or {ROW_FORMATS}"
        )


# ---------------------------------------------------------------- field helpers


def _item(place: RowPlace, row: Mapping[str, Any], **fields: Any) -> ReasoningItem:
    domain = row.get("domain")
    try:
        return ReasoningItem(
            id=place.item_id,
            domain=domain.strip() if isinstance(domain, str) and domain.strip() else place.domain,
            source=place.source,
            **fields,
        )
    except ValueError as error:  # the item's own checks: "field: problem"
        field_name, _, problem = str(error).partition(": ")
        raise place.error(field_name, problem or str(error)) from None


def _text(row: Mapping[str, Any], name: str, place: RowPlace, *, required: bool = True) -> str:
    value = row.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise place.error(name, _missing_or_type(value, "text"))
    if required and not value.strip():
        raise place.error(name, "empty")
    return value


def _number(row: Mapping[str, Any], name: str, place: RowPlace) -> float:
    value = row.get(name)
    if value is None:
        raise place.error(name, "missing")
    number = None if isinstance(value, bool) else normalize_numeric(value)
    if number is None:
        raise place.error(name, f"not a number: {value!r}")
    return number


def _missing_or_type(value: Any, expected: str) -> str:
    if value is None:
        return "missing"
    return f"expected {expected}, got {_json_type(value)}"


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    for kind, label in names.items():
        if isinstance(value, kind):
            return label
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _first_present(row: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    return next((name for name in names if row.get(name) is not None), None)


def _clean_lines(text: str) -> str:
    return "\n".join(line.strip() for line in text.strip().splitlines() if line.strip())


def _choices(row: Mapping[str, Any], nested: Any, place: RowPlace) -> tuple[list[str], list[str]]:
    """Option labels and texts from whichever layout the row uses."""
    name = _first_present(row, ("choices", "options"))
    raw = row.get(name) if name is not None else nested
    field_name = name or "choices"
    if raw is None:
        raise place.error(field_name, "missing")
    labels: list[Any]
    texts: list[Any]
    if isinstance(raw, str):
        parsed = _parse_option_string(raw)
        if parsed is None:
            raise place.error(field_name, f"cannot read options from {raw[:60]!r}")
        labels, texts = parsed
    elif isinstance(raw, Mapping):
        labels, texts = raw.get("label"), raw.get("text")
        if not isinstance(labels, list) or not isinstance(texts, list):
            raise place.error(field_name, "expected lists under 'label' and 'text'")
        if len(labels) != len(texts):
            raise place.error(field_name, f"{len(labels)} labels but {len(texts)} texts")
    elif isinstance(raw, list) and all(isinstance(entry, Mapping) for entry in raw) and raw:
        labels = [entry.get("label") for entry in raw]
        texts = [entry.get("text") for entry in raw]
    elif isinstance(raw, list):
        texts = [
            _strip_option_prefix(entry, OPTION_LETTERS[index % len(OPTION_LETTERS)])
            for index, entry in enumerate(raw)
        ]
        labels = list(OPTION_LETTERS[: len(texts)])
    else:
        raise place.error(field_name, f"expected a list or object, got {_json_type(raw)}")
    if not 2 <= len(texts) <= len(OPTION_LETTERS):
        raise place.error(field_name, f"{len(texts)} options, need 2 to {len(OPTION_LETTERS)}")
    for index, (label, text) in enumerate(zip(labels, texts, strict=True)):
        if not isinstance(text, str) or not text.strip():
            raise place.error(field_name, f"option {index + 1} is not non-empty text")
        if not isinstance(label, str | int) or isinstance(label, bool):
            raise place.error(field_name, f"option {index + 1} has no label")
    return [str(label).strip() for label in labels], [str(text).strip() for text in texts]


def _strip_option_prefix(entry: Any, letter: str) -> Any:
    if not isinstance(entry, str):
        return entry
    return re.sub(rf"^\s*\(?{letter}\s*\)\s*", "", entry, flags=re.IGNORECASE)


def _parse_option_string(text: str) -> tuple[list[str], list[str]] | None:
    """MathQA's `"a ) 38 , b ) 27.675 , c ) 30"` as (labels, texts); None if unreadable."""
    starts: list[tuple[str, int, int]] = []
    position = 0
    for letter in OPTION_LETTERS.lower():
        anchor = r"^\s*" if not starts else r",\s*"
        match = re.compile(anchor + rf"\(?{letter}\s*\)", re.IGNORECASE).search(text, position)
        if match is None:
            break
        starts.append((letter.upper(), match.start(), match.end()))
        position = match.end()
    if not starts:
        return None
    labels, texts = [], []
    for index, (label, _, content_start) in enumerate(starts):
        content_end = starts[index + 1][1] if index + 1 < len(starts) else len(text)
        labels.append(label)
        texts.append(text[content_start:content_end].strip(" ,"))
    return labels, texts


def _answer_index(
    value: Any, labels: list[str], texts: list[str], name: str, place: RowPlace
) -> int:
    if value is None:
        raise place.error(name, "missing")
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < len(texts):
            return value
        raise place.error(name, f"index {value} out of range 0..{len(texts) - 1}")
    if not isinstance(value, str):
        raise place.error(name, f"expected an option label, got {_json_type(value)}")
    key = value.strip().strip("().:").strip().casefold()
    for index, label in enumerate(labels):
        if key == label.casefold():
            return index
    for index, text in enumerate(texts):
        if value.strip().casefold() == text.casefold():
            return index
    raise place.error(name, f"{value!r} is not one of the option labels {', '.join(labels)}")


def _bigbench_target(row: Mapping[str, Any], place: RowPlace) -> str | None:
    target = row.get("target")
    if isinstance(target, list):
        target = target[0] if target else None
    if target is None:
        return None
    if not isinstance(target, str) or not target.strip():
        raise place.error("target", "expected non-empty text or a list of texts")
    return target.strip()


def _best_target(scores: Any, place: RowPlace) -> tuple[list[str], int]:
    if not isinstance(scores, Mapping) or len(scores) < 2:
        raise place.error("target_scores", "expected an object with at least two targets")
    keys = [str(key).strip() for key in scores]
    values = list(scores.values())
    for key, value in zip(keys, values, strict=True):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise place.error("target_scores", f"score of {key!r} is not a number: {value!r}")
        if not key:
            raise place.error("target_scores", "empty target")
    best_score = max(values)
    best = [index for index, value in enumerate(values) if value == best_score]
    if len(best) != 1:
        raise place.error("target_scores", f"no single best target (tie at {best_score})")
    return keys, best[0]


def _yes_no_word(text: str) -> str | None:
    word = text.strip().rstrip(".!,").strip().casefold()
    return word if word in ("yes", "no") else None


def _explanation_after(target: str | None, answer: str) -> str:
    """The explanation in a target like "Yes. Because ..." (empty when there is none)."""
    if not target:
        return ""
    match = re.match(rf"^\s*{re.escape(answer)}\b[.!,:]?\s*", target, re.IGNORECASE)
    return _clean_lines(target[match.end() :]) if match else ""
