"""The entry points: a file, a local dataset or a hub dataset in, reasoning items out.

They pick the container from the path, the row format from the caller or the first record, and
turn bad rows into raised or skipped `DataFormatError`s.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lada.tasks.errors import DataFormatError
from lada.tasks.item import ReasoningItem
from lada.tasks.loaders.containers import (
    Records,
    bigbench_records,
    dataset_records,
    jsonl_records,
    pick_split,
    read_json,
    read_local_dataset,
)
from lada.tasks.loaders.fields import LoadResult, RowParser, RowPlace, json_type
from lada.tasks.loaders.formats import (
    ROW_FORMATS,
    ROW_PARSERS,
    FileFormat,
    detect_row_format,
)

# The package's logger, so skip warnings are logged as `lada.tasks.loaders`.
logger = logging.getLogger(__package__)

HF_SUFFIXES = (".parquet", ".arrow")


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
        document = read_json(file_path, file_name)
        if isinstance(document, Mapping) and "examples" in document:
            records, task_name = bigbench_records(document, file_name)
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
        records = list(jsonl_records(file_path, file_name))
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
        dataset = read_local_dataset(local, file_name, cache)
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
        split = pick_split(dataset, split, file_name)
        dataset = dataset[split]
    default_source = f"{base_name}:{split}" if split else base_name
    records = dataset_records(dataset, file_name, dict(field_map or {}))
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

        dataset = read_local_dataset(file_path, file_name, None)
        if isinstance(dataset, datasets.DatasetDict):
            dataset = dataset[pick_split(dataset, None, file_name)]
        return _detect(dataset_records(dataset, file_name, {}), file_name)
    if file_path.suffix.lower() == ".json":
        document = read_json(file_path, file_name)
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
    return _detect(jsonl_records(file_path, file_name), file_name)


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
                    file_name, line, "row", f"expected a JSON object, got {json_type(record)}"
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


def _detect(records: Iterable[tuple[int, Any]], file_name: str) -> str:
    for line, record in records:
        if isinstance(record, DataFormatError):
            raise record
        if not isinstance(record, Mapping):
            raise DataFormatError(
                file_name, line, "row", f"expected a JSON object, got {json_type(record)}"
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
