"""Containers: the records of a JSONL file, a JSON file, a BIG-bench task or a `datasets.Dataset`.

Each yields records with their 1-based line (JSONL line, JSON array index + 1, BIG-bench example
index + 1, dataset row index + 1), so every container feeds the same row parsers and a bad row
reads the same wherever it came from. A file that cannot be read at all raises; a record that
cannot be decoded is yielded as its `DataFormatError`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from lada.tasks.errors import DataFormatError
from lada.tasks.loaders.fields import json_type

# A container yields (line, record) pairs; a record that could not even be decoded is yielded as
# the DataFormatError saying why, so skip_bad can step over it.
Records = Iterable[tuple[int, Any]]


def jsonl_records(file_path: Path, file_name: str) -> Iterator[tuple[int, Any]]:
    """Records of a JSONL file, blank lines skipped, line = line number."""
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


def dataset_records(
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


def read_json(file_path: Path, file_name: str) -> Any:
    """A whole JSON document; any failure is a `DataFormatError` about the file."""
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


def bigbench_records(
    document: Mapping[str, Any], file_name: str
) -> tuple[list[tuple[int, Any]], str | None]:
    """A BIG-bench task's examples (line = index + 1) and its `name`, if any."""
    examples = document.get("examples")
    if not isinstance(examples, list):
        raise DataFormatError(
            file_name, None, "examples", f"expected a list, got {json_type(examples)}"
        )
    name = document.get("name")
    task_name = name.strip() if isinstance(name, str) and name.strip() else None
    return list(enumerate(examples, start=1)), task_name


def read_local_dataset(local: Path, file_name: str, cache_dir: str | None) -> Any:
    """A dataset saved on disk (directory, parquet, JSON/JSONL or arrow file)."""
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


def pick_split(dataset: Mapping[str, Any], split: str | None, file_name: str) -> str:
    """The split to read: the one asked for, or the only one there is."""
    names = list(dataset)
    if split is None and len(names) == 1:
        return names[0]
    if split not in names:
        wanted = "no split given" if split is None else f"no split {split!r}"
        raise DataFormatError(file_name, None, "split", f"{wanted}; choose one of {names}")
    return split
