"""The benchmark's report: percentiles, targets, and the table in text, Markdown and JSON."""

from __future__ import annotations

import json

import pytest

from factorial_ws.bench.report import (
    Row,
    all_met,
    cpu_ms_per,
    latency_rows,
    median,
    percentile,
    render_json,
    render_markdown,
    render_table,
)


def test_percentile_interpolates_between_closest_ranks() -> None:
    samples = [4.0, 1.0, 3.0, 2.0]  # unordered on purpose
    assert percentile(samples, 0) == 1.0
    assert percentile(samples, 100) == 4.0
    assert percentile(samples, 50) == 2.5
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)
    assert median([7.0]) == 7.0


def test_percentile_refuses_no_samples_and_out_of_range_q() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_ratio_targets_compare_the_value_with_its_same_run_reference() -> None:
    latency = Row("latency", "p50", 4.0, "ms", "raw Celery", 3.2, "ratio_max", 1.3)
    assert latency.ratio == pytest.approx(1.25)
    assert latency.met is True
    assert Row("latency", "p50", 4.5, "ms", "raw", 3.2, "ratio_max", 1.3).met is False
    assert Row("tput", "rate", 90.0, "1/s", "raw", 100.0, "ratio_min", 0.9).met is True
    assert Row("tput", "rate", 89.0, "1/s", "raw", 100.0, "ratio_min", 0.9).met is False


def test_value_targets_bound_the_value_itself() -> None:
    assert Row("c", "errors", 0, "", check="value_max", limit=0).met is True
    assert Row("c", "errors", 1, "", check="value_max", limit=0).met is False
    assert Row("c", "delivered", 9999, "", check="value_min", limit=10000).met is False
    assert Row("c", "time", 3.0, "s").met is None  # no target: neither met nor missed


def test_a_ratio_target_without_a_reference_is_undecided() -> None:
    assert Row("x", "p50", 1.0, "ms", check="ratio_max", limit=1.3).met is None
    assert Row("x", "p50", 1.0, "ms", "ref", 0.0, "ratio_max", 1.3).ratio is None


def test_all_met_fails_on_any_missed_target_only() -> None:
    met = Row("a", "m", 1, "", check="value_max", limit=2)
    missed = Row("a", "m", 3, "", check="value_max", limit=2)
    untargeted = Row("a", "m", 3, "")
    assert all_met([met, untargeted])
    assert not all_met([met, missed, untargeted])


def test_latency_rows_give_p50_p95_p99_with_their_targets() -> None:
    samples = [float(v) for v in range(1, 101)]
    reference = [v / 2 for v in samples]
    rows = latency_rows("lat", samples, "raw", reference, p50_ratio_max=1.3, p99_max_ms=100)
    assert [row.metric for row in rows] == ["p50", "p95", "p99"]
    assert rows[0].ratio == pytest.approx(2.0)
    assert rows[0].met is False  # twice the reference
    assert rows[1].met is None
    assert rows[2].value == pytest.approx(99.01)
    assert rows[2].met is True


def test_table_aligns_columns_and_marks_missed_targets() -> None:
    rows = [
        Row("1 latency", "p50", 3.74, "ms", "raw Celery", 3.21, "ratio_max", 1.3),
        Row("3 concurrency", "errors", 2, "", check="value_max", limit=0),
    ]
    lines = render_table(rows).splitlines()
    assert lines[0].split() == ["scenario", "metric", "value", "reference", "ratio", "target", "met"]
    assert set(lines[1]) <= {"-", " "}
    assert "3.74 ms" in lines[2] and "3.21 ms (raw Celery)" in lines[2] and "1.17x" in lines[2]
    assert lines[2].rstrip().endswith("yes")
    assert lines[3].rstrip().endswith("NO")
    # Columns line up: every row's value starts where the header's does.
    column = lines[0].index("value")
    assert lines[2][column:].startswith("3.74 ms")
    assert lines[3][column:].split()[0] == "2"  # counts print as integers


def test_markdown_is_a_table_with_one_line_per_row_and_escaped_pipes() -> None:
    rows = [Row("a|b", "p50", 1.0, "ms"), Row("c", "p99", 2.0, "ms")]
    lines = render_markdown(rows).splitlines()
    assert len(lines) == 4
    assert lines[1].startswith("| --- |")
    assert "a\\|b" in lines[2]
    assert all(line.startswith("| ") and line.endswith(" |") for line in lines)


def test_json_keeps_every_figure_with_ratio_target_and_verdict() -> None:
    row = Row("lat", "p50", 4.0, "ms", "raw", 3.2, "ratio_max", 1.3)
    data = json.loads(render_json([row], {"mode": "quick"}))
    assert data["meta"] == {"mode": "quick"}
    (saved,) = data["rows"]
    assert saved["value"] == 4.0 and saved["reference"] == 3.2
    assert saved["ratio"] == pytest.approx(1.25)
    assert saved["met"] is True and saved["target"] == "≤ 1.3x ref"


def test_cpu_per_request_sums_the_rounds_and_needs_every_reading() -> None:
    assert cpu_ms_per([0.5, 1.5], 4000) == pytest.approx(0.5)
    assert cpu_ms_per([0.5, None], 4000) is None  # a round whose CPU could not be read
    assert cpu_ms_per([], 10) is None
    assert cpu_ms_per([1.0], 0) is None
