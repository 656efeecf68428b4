"""The fault suite's table: one row per fault (requests sent, failed, why, what was allowed
to fail), filled by `test_faults` and printed at the end of the run by the terminal-summary
hook in `conftest`, so that CI output carries it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Row:
    fault: str
    seconds: float
    sent: int
    failed: int
    causes: Counter[str] = field(default_factory=Counter)
    """Failed requests by status code or error class."""
    allowed: int = 0
    """Failures the fault may cause (requests in flight to a killed process)."""
    allowed_why: str = "none"
    p99_ms: float = 0.0
    note: str = ""


ROWS: list[Row] = []


def record(row: Row) -> None:
    ROWS.append(row)


def render(rows: list[Row]) -> list[str]:
    header = (
        f"{'fault':<48} {'s':>5} {'sent':>6} {'failed':>6} {'allowed':>7} {'p99 ms':>7}  "
        "failures by cause / note"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        causes = ", ".join(f"{cause}: {n}" for cause, n in sorted(row.causes.items())) or "-"
        allowed = f"{row.allowed}" if row.allowed else "0"
        lines.append(
            f"{row.fault:<48} {row.seconds:>5.1f} {row.sent:>6} {row.failed:>6} "
            f"{allowed:>7} {row.p99_ms:>7.1f}  {causes}"
            + (f" ({row.allowed_why})" if row.allowed else "")
            + (f"; {row.note}" if row.note else "")
        )
    return lines
