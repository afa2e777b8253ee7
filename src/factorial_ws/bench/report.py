"""The benchmark's figures, without I/O: percentiles, rows with their targets, the table as text,
Markdown and JSON. Every figure is compared with a reference measured in the same run."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Check = Literal["ratio_max", "ratio_min", "value_max", "value_min", "none"]


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks."""
    if not samples:
        raise ValueError("no samples")
    if not 0 <= q <= 100:
        raise ValueError("q must be within 0..100")
    ordered = sorted(samples)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = math.ceil(position)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(samples: Sequence[float]) -> float:
    return percentile(samples, 50)


def cpu_ms_per(cpu_s: Sequence[float | None], count: int) -> float | None:
    """Milliseconds of CPU per request: the CPU seconds of several rounds over the requests of
    them all; None when a round's CPU could not be read, or there was no request."""
    if count <= 0 or not cpu_s or any(seconds is None for seconds in cpu_s):
        return None
    return 1000 * sum(seconds or 0.0 for seconds in cpu_s) / count


@dataclass(frozen=True)
class Row:
    """One figure, its same-run reference and the target it is held to.

    ``check`` says what ``limit`` bounds: the ratio value/reference, or the value itself.
    """

    scenario: str
    metric: str
    value: float
    unit: str
    reference_name: str = ""
    reference: float | None = None
    check: Check = "none"
    limit: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.reference is None or self.reference == 0:
            return None
        return self.value / self.reference

    @property
    def met(self) -> bool | None:
        """True or False against the target; None when the row has no target."""
        if self.check == "none" or self.limit is None:
            return None
        if self.check in ("ratio_max", "ratio_min"):
            ratio = self.ratio
            if ratio is None:
                return None
            return ratio <= self.limit if self.check == "ratio_max" else ratio >= self.limit
        return self.value <= self.limit if self.check == "value_max" else self.value >= self.limit

    @property
    def target(self) -> str:
        if self.check == "none" or self.limit is None:
            return ""
        sign = "≤" if self.check.endswith("max") else "≥"
        if self.check.startswith("ratio"):
            return f"{sign} {self.limit:g}x ref"
        return f"{sign} {_number(self.limit)} {self.unit}".rstrip()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio, "met": self.met, "target": self.target}


@dataclass
class Run:
    """What a run measured: its rows, the latency samples (for the plot) and notes."""

    rows: list[Row] = field(default_factory=list)
    samples: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _number(value: float) -> str:
    if float(value).is_integer():
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


_HEADERS = ("scenario", "metric", "value", "reference", "ratio", "target", "met")


def _cells(row: Row) -> tuple[str, ...]:
    value = f"{_number(row.value)} {row.unit}".rstrip()
    reference = ""
    if row.reference is not None:
        reference = f"{_number(row.reference)} {row.unit} ({row.reference_name})".rstrip()
    ratio = "" if row.ratio is None else f"{row.ratio:.2f}x"
    met = {True: "yes", False: "NO", None: ""}[row.met]
    return (row.scenario, row.metric, value, reference, ratio, row.target, met)


def render_table(rows: Sequence[Row]) -> str:
    """A plain-text table with aligned columns, for the terminal."""
    lines = [_HEADERS, *(_cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(_HEADERS))]
    rendered = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in lines
    ]
    rendered.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in rendered)


def render_markdown(rows: Sequence[Row]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    out = [line(_HEADERS), line(["---"] * len(_HEADERS))]
    out += [line(_cells(row)) for row in rows]
    return "\n".join(out)


def render_json(rows: Sequence[Row], meta: dict[str, Any]) -> str:
    return json.dumps({"meta": meta, "rows": [row.to_dict() for row in rows]}, indent=2)


def latency_rows(
    scenario: str,
    samples_ms: Sequence[float],
    reference_name: str,
    reference_ms: Sequence[float],
    *,
    p50_ratio_max: float | None = None,
    p99_max_ms: float | None = None,
) -> list[Row]:
    """p50/p95/p99 of ``samples_ms`` next to the same percentiles of the reference."""
    rows = []
    for q in (50, 95, 99):
        check: Check = "none"
        limit: float | None = None
        if q == 50 and p50_ratio_max is not None:
            check, limit = "ratio_max", p50_ratio_max
        if q == 99 and p99_max_ms is not None:
            check, limit = "value_max", p99_max_ms
        rows.append(
            Row(
                scenario,
                f"p{q}",
                percentile(samples_ms, q),
                "ms",
                reference_name,
                percentile(reference_ms, q) if reference_ms else None,
                check,
                limit,
            )
        )
    return rows


def all_met(rows: Sequence[Row]) -> bool:
    return all(row.met is not False for row in rows)
