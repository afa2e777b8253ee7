"""Prometheus metrics of one gateway process (each process of a multi-process gateway has its own)."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

# The classic text format, which generate_latest writes and every Prometheus version reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# The `*_created` timestamp series double the output and tell an operator nothing here.
disable_created_metrics()  # type: ignore[no-untyped-call]

registry = CollectorRegistry(auto_describe=True)

connections_open = Gauge("factorial_ws_connections_open", "Open WebSocket connections.", registry=registry)
requests_total = Counter(
    "factorial_ws_requests_total", "Requests received, by type.", ["type"], registry=registry
)
errors_total = Counter(
    "factorial_ws_errors_total", "Error replies sent, by message.", ["message"], registry=registry
)
tasks_submitted_total = Counter(
    "factorial_ws_tasks_submitted_total",
    "Tasks sent to Celery, by queue.",
    ["queue"],
    registry=registry,
)
tasks_reused_total = Counter(
    "factorial_ws_tasks_reused_total",
    "Requests answered by the task of the same number instead of a new one, by queue.",
    ["queue"],
    registry=registry,
)
slow_consumers_total = Counter(
    "factorial_ws_slow_consumers_total",
    "Connections closed because the client did not read its results.",
    registry=registry,
)
tasks_waiting = Gauge(
    "factorial_ws_tasks_waiting", "Tasks whose result a client is waiting for.", registry=registry
)
result_seconds = Histogram(
    "factorial_ws_result_seconds",
    "Time from a factorial request to its result being sent, by queue.",
    ["queue"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=registry,
)


def error_label(message: str) -> str:
    """Bounded label values: 'Invalid request: <detail>' counts as one kind."""
    return message.split(":", 1)[0] if message.startswith("Invalid request") else message


def render() -> bytes:
    return generate_latest(registry)
