"""A tiny run of the benchmark against its own private system: every scenario runs (the catalog
task's too, with the wordcount example's stock worker), every request is answered, and the table
is written as JSON, Markdown and (with matplotlib) a plot."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from factorial_ws.bench import run_bench
from factorial_ws.bench.plan import Plan
from factorial_ws.config import Config

TINY = Plan(
    latency_requests=20,
    latency_rounds=2,
    throughput_requests=100,
    throughput_connections=4,
    throughput_window=5,
    throughput_rounds=2,
    concurrency_connections=60,
    concurrency_processes=2,
    waiting_window_s=0.5,
    big_repeats=1,
    isolation_requests=20,
    crowd_big_clients=20,
    acks_requests=200,
    acks_rounds=2,
    acks_connections=4,
    acks_window=10,
    raw_submissions=50,
    stored_results=30,
    lookups_requests=200,
    lookups_rounds=2,
    lookups_connections=4,
    lookups_window=10,
    raw_lookups=40,
)


def test_a_tiny_bench_runs_every_scenario_and_writes_its_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results"
    run_bench(Config(), quick=True, output=str(out), plan=TINY)  # targets are not judged here

    report = json.loads((out / "bench.json").read_text())
    rows = {(row["scenario"], row["metric"]): row for row in report["rows"]}
    scenarios = {scenario.split()[0] for scenario, _ in rows}
    assert scenarios == {"1", "2", "3", "4", "5", "6", "7", "8", "9"}
    concurrency = "3 concurrency 60 conns"
    assert rows[(concurrency, "results delivered")]["value"] == 60
    assert rows[(concurrency, "errors")]["value"] == 0
    assert rows[("2 throughput factorial(5)", "errors")]["value"] == 0
    assert rows[("2 throughput factorial(5)", "tasks computed")]["value"] == 100  # none reused
    latency = rows[("1 latency factorial(5)", "p50")]
    assert latency["value"] > 0 and latency["reference"] > 0 and latency["ratio"] > 0
    cpu = rows[("2 throughput factorial(5)", "gateway CPU per request")]
    assert cpu["value"] > 0 and cpu["reference"] > 0
    acks = "7 acks/s, no worker"
    assert rows[(acks, "errors")]["value"] == 0  # every submission acked, none refused
    assert rows[(acks, "acks/s (median)")]["value"] > 0 and rows[(acks, "acks/s (median)")]["reference"] > 0
    assert rows[(acks, "gateway CPU per ack")]["value"] > 0
    stored = "8 stored results/s"
    assert rows[(stored, "errors")]["value"] == 0  # every lookup brought its exact result
    assert rows[(stored, "results/s (median)")]["reference"] > 0
    assert rows[(stored, "gateway CPU per lookup")]["value"] > 0
    assert rows[(concurrency, "gateway peak RSS")]["value"] > 0
    assert rows[("4 factorial(1000000)", "end to end (median)")]["reference"] > 0
    crowd = "6 20 clients, same 1000000!"
    assert rows[(crowd, "exact results delivered")]["value"] == 20
    assert rows[(crowd, "computations")]["value"] == 1
    assert rows[(crowd, "gateway RSS growth (peak)")]["reference"] is not None
    # The wordcount example's count_words through its catalog and a stock worker, every call
    # answered with its exact counts (a dict), each computed; beside factorial(5) and raw Celery.
    catalog = "9 catalog task count_words"
    assert rows[(catalog, "errors")]["value"] == 0
    assert rows[(catalog, "tasks computed")]["value"] == 100  # none shared
    catalog_cpu = rows[(catalog, "gateway CPU per request")]
    assert catalog_cpu["value"] > 0 and catalog_cpu["reference"] > 0  # and factorial(5)'s
    assert rows[(catalog, "raw Celery client CPU per request")]["value"] > 0
    assert (
        rows[(catalog, "tasks/s (median)")]["value"] > 0
        and rows[(catalog, "tasks/s (median)")]["reference"] > 0
    )
    catalog_p50 = rows[(catalog, "p50")]
    assert catalog_p50["value"] > 0 and catalog_p50["reference"] > 0
    assert rows[(catalog, "p50 next to factorial(5)")]["reference"] > 0

    markdown = (out / "bench.md").read_text()
    assert "| 1 latency factorial(5) | p50 |" in markdown
    assert "raw Celery" in capsys.readouterr().out  # the table was printed
    samples = json.loads((out / "samples.json").read_text())
    assert len(samples["raw Celery"]) == 20 and len(samples["gateway (WebSocket)"]) == 20
    assert len(samples["gateway (WebSocket), count_words"]) == 20
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "bench-latency.png").read_bytes().startswith(b"\x89PNG")
