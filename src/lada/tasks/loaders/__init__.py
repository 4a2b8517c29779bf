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

Modules, each importing only those above it:

- `fields`: `RowPlace`, `LoadResult` and the field readers every row parser shares.
- `gsm8k`, `svamp`, `multiple_choice`, `bigbench`: one row format each, one `parse_*_row`.
- `formats`: the registry, format name -> row parser, and auto-detection from field names.
- `containers`: records out of JSONL, JSON, BIG-bench task files and `datasets.Dataset`s.
- `readers`: the entry points `load_file`, `load_hf`, `detect_format` and `load_<format>`.

Where a new format goes: copy `svamp.py` (the smallest parser) to `<name>.py` and rewrite its
`parse_<name>_row` with the helpers from `fields`; then, in `formats.py`, add the name to
`RowFormat` and one line to `ROW_PARSERS`, plus a rule in `detect_row_format` if `format="auto"`
should recognise it. The containers and entry points need no change.
"""

from __future__ import annotations

from lada.tasks.loaders.bigbench import parse_bigbench_row
from lada.tasks.loaders.containers import Records
from lada.tasks.loaders.fields import LoadResult, RowParser, RowPlace
from lada.tasks.loaders.formats import (
    ROW_FORMATS,
    ROW_PARSERS,
    FileFormat,
    RowFormat,
    detect_row_format,
)
from lada.tasks.loaders.gsm8k import parse_gsm8k_row
from lada.tasks.loaders.multiple_choice import parse_mc_row
from lada.tasks.loaders.readers import (
    HF_SUFFIXES,
    detect_format,
    load_bigbench,
    load_file,
    load_gsm8k,
    load_hf,
    load_mc,
    load_svamp,
)
from lada.tasks.loaders.svamp import parse_svamp_row

__all__ = [
    "HF_SUFFIXES",
    "ROW_FORMATS",
    "ROW_PARSERS",
    "FileFormat",
    "LoadResult",
    "Records",
    "RowFormat",
    "RowParser",
    "RowPlace",
    "detect_format",
    "detect_row_format",
    "load_bigbench",
    "load_file",
    "load_gsm8k",
    "load_hf",
    "load_mc",
    "load_svamp",
    "parse_bigbench_row",
    "parse_gsm8k_row",
    "parse_mc_row",
    "parse_svamp_row",
]
