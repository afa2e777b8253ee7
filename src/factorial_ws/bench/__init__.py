"""`factorial-ws bench`: the system as its users feel it, next to raw Celery, in one run.

By default the bench starts a complete private system (Redis, one worker per queue, the gateway,
all as processes, as `factorial-ws up` does) and stops it at the end; with ``--url`` and
``REDIS_URL`` it targets a running one instead. Every figure is a median or percentile and is
reported with its reference measured in the same run, because the machines are shared and noisy.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..config import Config
from ..gateway.tuning import raise_open_files_limit
from . import load, reference
from .plan import Plan
from .report import Row, Run, all_met, median, render_json, render_markdown, render_table
from .scenarios import SCENARIOS
from .system import VARIANTS, System, Variant, private_system

# --- the command --------------------------------------------------------------------------------


def run_bench(
    config: Config, *, quick: bool, output: str, url: str | None = None, plan: Plan | None = None
) -> int:
    """Run every scenario, print the table, write JSON/Markdown (and a PNG with matplotlib).
    Returns 0 when every target was met, 1 otherwise."""
    raise_open_files_limit()
    plan = plan or Plan.for_mode(quick)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    run = Run()
    started = time.monotonic()
    with _system(config, out, url) as system:
        for scenario in SCENARIOS:
            print(f"bench: {scenario.__doc__.splitlines()[0] if scenario.__doc__ else scenario.__name__}",
                  file=sys.stderr, flush=True)  # fmt: skip
            scenario(system, config, plan, run)
    meta = _meta(quick, url, time.monotonic() - started, run.notes)
    _write(out, run, meta)
    print(render_table(run.rows))
    for note in run.notes:
        print(f"  {note}")
    return 0 if all_met(run.rows) else 1


def run_sweep(config: Config, *, quick: bool, output: str, variants: tuple[Variant, ...] = VARIANTS) -> int:
    """Throughput and latency, gateway and raw Celery, for each worker-settings variant."""
    plan = Plan.for_mode(quick)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    defaults_raw: float | None = None
    per_round = max(1, plan.throughput_requests // plan.throughput_rounds)
    for variant in variants:
        print(f"bench sweep: {variant.name}", file=sys.stderr, flush=True)
        with (
            tempfile.TemporaryDirectory(prefix="factorial-ws-sweep-") as work,
            private_system(config, Path(work), variant) as system,
        ):
            celery_app = reference.raw_app(config, system.redis_url)
            reference.raw_latency(celery_app, 20)
            load.ws_latency(system.url, 20)
            raw: list[float] = []
            gateway: list[float] = []
            for _ in range(plan.throughput_rounds):
                raw.append(reference.raw_throughput(celery_app, per_round).per_s)
                gateway.append(
                    load.ws_throughput(
                        system.url, per_round, plan.throughput_connections, plan.throughput_window
                    ).per_s
                )
            raw_latency = reference.raw_latency(celery_app, plan.latency_requests // 2)
            gateway_latency = load.ws_latency(system.url, plan.latency_requests // 2)
        defaults_raw = defaults_raw or median(raw)
        rows += [
            Row(variant.name, "raw Celery tasks/s", median(raw), "1/s", "raw, Celery defaults", defaults_raw),
            Row(variant.name, "gateway tasks/s", median(gateway), "1/s", "raw, Celery defaults",
                defaults_raw, "ratio_min", 0.9),
            Row(variant.name, "gateway tasks/s", median(gateway), "1/s", "raw, same settings", median(raw)),
            Row(variant.name, "gateway p50", median(gateway_latency), "ms", "raw, same settings",
                median(raw_latency)),
        ]  # fmt: skip
    meta = _meta(quick, None, 0.0, [f"{plan.throughput_rounds} rounds of {per_round} requests per variant"])
    (out / "sweep.json").write_text(render_json(rows, meta) + "\n")
    (out / "sweep.md").write_text(render_markdown(rows) + "\n")
    print(render_table(rows))
    return 0


@contextlib.contextmanager
def _system(config: Config, out: Path, url: str | None) -> Iterator[System]:
    if url is not None:
        yield System(url, config.redis_url)
        return
    with (
        tempfile.TemporaryDirectory(prefix="factorial-ws-bench-") as work,
        private_system(config, Path(work)) as system,
    ):
        yield system


def _meta(quick: bool, url: str | None, seconds: float, notes: list[str]) -> dict[str, Any]:
    return {
        "mode": "quick" if quick else "full",
        "target": url or "private system",
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "duration_s": round(seconds, 1),
        "notes": notes,
    }


def _write(out: Path, run: Run, meta: dict[str, Any]) -> None:
    (out / "bench.json").write_text(render_json(run.rows, meta) + "\n")
    notes = "".join(f"- {note}\n" for note in meta["notes"])
    header = f"Mode: {meta['mode']}, {meta['cpus']} CPUs, Python {meta['python']}, {meta['duration_s']} s\n\n"
    (out / "bench.md").write_text(header + render_markdown(run.rows) + "\n\n" + notes)
    (out / "samples.json").write_text(json.dumps(run.samples) + "\n")
    if not _plot(run.samples, out / "bench-latency.png"):
        print("bench: matplotlib is not installed; no plot", file=sys.stderr)


def _plot(samples: dict[str, list[float]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axis = plt.subplots(figsize=(8, 4.5))
    for name, values in samples.items():
        ordered = sorted(values)
        fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
        axis.plot(ordered, fractions, label=f"{name} (n={len(ordered)})")
    axis.set_xscale("log")
    axis.set_xlabel("round trip of a small task (ms, log scale)")
    axis.set_ylabel("fraction of requests")
    axis.set_title("Latency distributions (CDF)")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
