"""Exceptions that carry the exit code a user or CI can rely on.

The CLI catches `BenchError` at the top, prints its one-line message and exits
with its code; everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # SLO missed or regression found
EXIT_BAD_INPUT = 2  # scenario, flags, files
EXIT_UNREACHABLE = 3  # target unreachable or run aborted
EXIT_INVALID = 4  # measurement invalid: the load generator fell behind its schedule


class BenchError(Exception):
    """An error the user can act on; `str(err)` is the whole message."""

    exit_code = EXIT_BAD_INPUT


class InputError(BenchError):
    """Bad scenario, flag or file: names the file, the field and what was expected."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None,
                 line: int | None = None) -> None:
        where = ""
        if file:
            where = file + (f":{line}" if line else "")
        if field:
            where = f"{where}: {field}" if where else field
        super().__init__(f"{where}: {message}" if where else message)
        self.file, self.field, self.line = file, field, line


class TargetError(BenchError):
    """The target could not be reached, or the run had to be aborted."""

    exit_code = EXIT_UNREACHABLE


class OutputError(BenchError):
    """A file could not be written (disk full, read-only file system): what was asked
    could not be finished, and the files written before are left as they were."""

    exit_code = EXIT_UNREACHABLE
