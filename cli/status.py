"""Exit codes of every command (DESIGN.md: 0 ok, 1 regression, 2 bad input, 3 cases failed;
130 / 143 stopped by SIGINT / SIGTERM, 128 + the signal as a shell reports it)."""

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    REGRESSION = 1
    BAD_INPUT = 2
    CASES_FAILED = 3
    INTERRUPTED = 130  # SIGINT (Ctrl-C)
    TERMINATED = 143  # SIGTERM (a CI runner's cancel, kill)

    @classmethod
    def for_signal(cls, signum: int) -> "ExitStatus":
        """130 for SIGINT, 143 for SIGTERM (the signals a sweep stops on)."""
        return cls.TERMINATED if signum == 15 else cls.INTERRUPTED
