"""How much of each benchmark scenario a run does: the quick plan and the full one."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    """How much of each scenario to run."""

    latency_requests: int
    latency_rounds: int
    throughput_requests: int
    throughput_connections: int
    throughput_window: int
    throughput_rounds: int
    concurrency_connections: int
    concurrency_processes: int
    waiting_window_s: float
    big_repeats: int
    isolation_requests: int
    crowd_big_clients: int = 1000
    # Scenario 7: factorial(5) submissions per round over all connections (of PIPELINED_PROCESSES
    # client processes), with acks_window in flight on each connection.
    acks_requests: int = 6000
    acks_rounds: int = 5
    acks_connections: int = 20
    acks_window: int = 50
    raw_submissions: int = 3000
    # Scenario 8: a pool of stored results (factorial(1..stored_results)), then lookups of them
    # per round over all connections; raw_lookups per round for the raw Celery reference.
    stored_results: int = 300
    lookups_requests: int = 10_000
    lookups_rounds: int = 5
    lookups_connections: int = 100
    lookups_window: int = 20
    raw_lookups: int = 1000

    @classmethod
    def for_mode(cls, quick: bool) -> Plan:
        """Quick: about a minute. Full: 10000 connections, and a CPU window as long as the
        default WS_PING_INTERVAL, so every connection's keepalive ping falls inside it."""
        if quick:
            return cls(
                300, 3, 2000, 20, 25, 3, 2000, 2, 2.0, 2, 300, 200,
                acks_requests=2000, acks_rounds=3, raw_submissions=800, lookups_requests=3000,
                lookups_rounds=3, lookups_connections=60, raw_lookups=500,
            )  # fmt: skip
        return cls(1500, 5, 6000, 40, 25, 5, 10_000, 4, 20.0, 3, 1000, 1000)
