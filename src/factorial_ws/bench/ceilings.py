"""Scenarios 7 and 8: the ceilings of one gateway process (acknowledged submissions a second
with no worker, stored results delivered a second), driven by the pipelined client processes."""

from __future__ import annotations

import redis

from ..config import Config
from . import load, pipelined
from .extra_gateways import workerless_gateway
from .gauges import Rate, quiet
from .plan import Plan
from .reference import raw_app, raw_lookups, raw_submissions
from .report import Row, Run, cpu_ms_per, median
from .system import System

# Issue 11's targets.
ACKS_PER_S_MIN = 5000.0  # one gateway process, no worker: its own ceiling of acknowledged submissions
STORED_RESULTS_PER_S_MIN = 8000.0  # one gateway process, lookups of small stored results
PIPELINED_PROCESSES = 2  # client processes of scenarios 7 and 8


def scenario_acks(system: System, config: Config, plan: Plan, run: Run) -> None:
    """Acknowledged factorial(5) submissions per second, one gateway process, no worker."""
    scenario = "7 acks/s, no worker"
    if system.log_dir is None:
        run.notes.append("acks/s: skipped against a running system (it needs a gateway with no worker)")
        return
    jobs = pipelined.spread(
        plan.acks_requests,
        plan.acks_connections,
        PIPELINED_PROCESSES,
        plan.acks_window,
        lambda count, _: pipelined.ack_lane(count, load.SMALL),
    )
    gateway: list[pipelined.Outcome] = []
    raw: list[Rate] = []
    with (
        workerless_gateway(config, system.log_dir) as (url, pid, redis_url),
        pipelined.PipelinedLoad(url, PIPELINED_PROCESSES) as clients,
        redis.Redis.from_url(redis_url) as redis_client,
    ):
        celery_app = raw_app(config, redis_url)
        raw_submissions(celery_app, 100)  # warm up both paths
        clients.run([pipelined.Job(job.lanes[:1], plan.acks_window) for job in jobs], pid)
        for _ in range(plan.acks_rounds):
            redis_client.flushdb()  # every round starts on an empty Redis
            raw.append(raw_submissions(celery_app, plan.raw_submissions))
            redis_client.flushdb()
            gateway.append(clients.run(jobs, pid))
            quiet(pid)  # the round's connections closed: their subscriptions are released
    acks = plan.acks_requests * plan.acks_rounds
    run.rows += [
        Row(scenario, "acks/s (median)", median([o.rate for o in gateway]), "1/s", "raw Celery delay()",
            median([r.per_s for r in raw]), "value_min", ACKS_PER_S_MIN),
        Row(scenario, "gateway CPU per ack", cpu_ms_per([o.gateway_cpu_s for o in gateway], acks) or 0.0,
            "ms", "raw Celery client CPU per delay()",
            cpu_ms_per([r.cpu_s for r in raw], plan.raw_submissions * plan.acks_rounds)),
        Row(scenario, "errors", sum(o.errors for o in gateway), "", check="value_max", limit=0),
    ]  # fmt: skip
    run.notes.append(
        f"acks/s: {plan.acks_rounds} rounds of {plan.acks_requests} factorial(5) over "
        f"{plan.acks_connections} connections x {plan.acks_window} in flight from {PIPELINED_PROCESSES} "
        f"processes, to a gateway with no worker on a private Redis; raw Celery delay() from the bench "
        f"process, one after another, to the same Redis; {_clients_cpu(gateway)}{_reasons(gateway)}"
    )


def scenario_stored_results(system: System, config: Config, plan: Plan, run: Run) -> None:
    """Lookups of finished small results: deliveries per second from many connections."""
    scenario = "8 stored results/s"
    stored = load.ws_stored_results(system.url, range(1, plan.stored_results + 1), window=50)
    # Connections start at offsets spread over the pool: at any moment they ask for different results.
    jobs = pipelined.spread(
        plan.lookups_requests,
        plan.lookups_connections,
        PIPELINED_PROCESSES,
        plan.lookups_window,
        lambda count, index: pipelined.lookup_lane(
            stored, count, len(stored) * index // plan.lookups_connections
        ),
    )
    celery_app = raw_app(config, system.redis_url)
    gateway: list[pipelined.Outcome] = []
    raw: list[Rate] = []
    with pipelined.PipelinedLoad(system.url, PIPELINED_PROCESSES) as clients:
        raw_lookups(celery_app, stored, 50)  # warm up both paths
        clients.run([pipelined.Job(job.lanes[:1], plan.lookups_window) for job in jobs], system.gateway_pid)
        for _ in range(plan.lookups_rounds):
            raw.append(raw_lookups(celery_app, stored, plan.raw_lookups))
            gateway.append(clients.run(jobs, system.gateway_pid))
            quiet(system.gateway_pid)
    errors = sum(outcome.errors for outcome in gateway) + sum(rate.errors for rate in raw)
    run.rows += [
        Row(scenario, "results/s (median)", median([o.rate for o in gateway]), "1/s",
            "raw Celery AsyncResult.get()", median([r.per_s for r in raw]), "value_min",
            STORED_RESULTS_PER_S_MIN),
        Row(scenario, "errors", errors, "", check="value_max", limit=0),
    ]  # fmt: skip
    gateway_ms = cpu_ms_per([o.gateway_cpu_s for o in gateway], plan.lookups_requests * plan.lookups_rounds)
    if gateway_ms is not None:
        raw_ms = cpu_ms_per([r.cpu_s for r in raw], plan.raw_lookups * plan.lookups_rounds)
        run.rows.append(
            Row(
                scenario,
                "gateway CPU per lookup",
                gateway_ms,
                "ms",
                "raw Celery client CPU per get()",
                raw_ms,
            )
        )
    run.notes.append(
        f"stored results/s: {plan.lookups_rounds} rounds of {plan.lookups_requests} lookups of "
        f"factorial(1..{plan.stored_results}) over {plan.lookups_connections} connections x "
        f"{plan.lookups_window} in flight from {PIPELINED_PROCESSES} processes; raw Celery "
        f"AsyncResult(id).get() of the same ids one after another, {plan.raw_lookups} a round; "
        f"{_clients_cpu(gateway)}{_reasons(gateway)}"
    )


def _clients_cpu(outcomes: list[pipelined.Outcome]) -> str:
    """How busy the client processes were, for a note: near one core each, they are the limit."""
    seconds = sum(o.seconds for o in outcomes)
    requests = sum(o.ok + o.errors for o in outcomes)
    clients_cpu_s = sum(o.clients_cpu_s for o in outcomes)
    return (
        f"the {PIPELINED_PROCESSES} client processes used {clients_cpu_s / seconds:.2f} cores in all "
        f"({1000 * clients_cpu_s / requests:.3f} ms per request)"
    )


def _reasons(outcomes: list[pipelined.Outcome]) -> str:
    """The errors' reasons, for a note (empty when there was none)."""
    reasons: dict[str, int] = {}
    for outcome in outcomes:
        for reason, count in outcome.reasons.items():
            reasons[reason] = reasons.get(reason, 0) + count
    return f"; errors: {reasons}" if reasons else ""
