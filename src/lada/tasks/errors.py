"""The one error type data loaders raise for bad input.

Loaders in `lada.tasks.loaders` raise only `DataFormatError` when a file or row is malformed, so a
caller (the CLI, a skip-bad loop, a fuzz test) can tell bad data from a bug with a single
`except`, and the message always points at the spot to fix: file, 1-based line, field.
"""

from __future__ import annotations


class DataFormatError(ValueError):
    """Bad input data, located by file, 1-based line (or None) and field.

    `str(error)` is `"{file}:{line}: {field}: {problem}"`, with `:{line}` left out when the
    problem belongs to the whole file, so editors and terminals can jump to it.
    """

    def __init__(self, file: str, line: int | None, field: str, problem: str) -> None:
        self.file = str(file)
        self.line = line
        self.field = field
        self.problem = problem
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.field}: {self.problem}"

    def __reduce__(self) -> tuple[type[DataFormatError], tuple[str, int | None, str, str]]:
        # Keeps the error picklable (multiprocessing, pytest-xdist) despite the custom __init__.
        return (type(self), (self.file, self.line, self.field, self.problem))
