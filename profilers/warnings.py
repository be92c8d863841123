"""Measurement warnings: an Enum of actionable messages, stored in records, shown by reporters."""

from __future__ import annotations

from enum import StrEnum

from ..reports.schema import TimeStats

# IQR/median above this is called noisy (torch.utils.benchmark warns at 10% too).
HIGH_NOISE_IQR_REL = 0.10


class MeasurementWarning(StrEnum):
    """Each value is the stored code; `hint` says what to do about it."""

    NOT_CONVERGED = "not_converged"
    HIGH_NOISE = "high_noise"

    @property
    def hint(self) -> str:
        return _HINTS[self]


_HINTS = {
    MeasurementWarning.NOT_CONVERGED: (
        "the median's 95% CI did not reach the target before the time cap; "
        "raise --max-time or loosen --target-ci"
    ),
    MeasurementWarning.HIGH_NOISE: (
        f"IQR/median above {HIGH_NOISE_IQR_REL:.0%}: other load on the machine? "
        "run `xfbench env`, close other programs, pin --threads"
    ),
}


def time_warnings(stats: TimeStats) -> list[MeasurementWarning]:
    """Pure check of one timing result."""
    out = []
    if not stats.converged:
        out.append(MeasurementWarning.NOT_CONVERGED)
    if stats.iqr_over_median > HIGH_NOISE_IQR_REL:
        out.append(MeasurementWarning.HIGH_NOISE)
    return out
