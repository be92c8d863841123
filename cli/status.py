"""Exit codes of every command (DESIGN.md: 0 ok, 1 regression, 2 bad input, 3 cases failed)."""

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    REGRESSION = 1
    BAD_INPUT = 2
    CASES_FAILED = 3
    INTERRUPTED = 130
