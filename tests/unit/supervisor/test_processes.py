"""Stopping processes: each signal in turn, one grace period shared by all, then SIGKILL."""

from __future__ import annotations

import signal
import time

from factorial_ws.supervisor.processes import stop_children
from factorial_ws.worker.processes import WORKER_STOP_SIGNALS
from support import PYTHON, UNIT_S, Launcher, Proc, process_env, wait_until

# Ignores SIGTERM (as a Celery worker in a warm shutdown waits for its task); exits 3 on SIGQUIT.
STUBBORN = """
import signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGQUIT, lambda *_: sys.exit(3))
print("ready", flush=True)
time.sleep(600)
"""
# Ignores both.
DEAF = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGQUIT, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(600)
"""


def start(launch: Launcher, name: str, code: str) -> Proc:
    proc = launch.process(name, [PYTHON, "-c", code], process_env(None))
    wait_until(lambda: "ready" in proc.log(), 10 * UNIT_S, f"{name} to set its signal handlers")
    return proc


def test_a_worker_that_waits_out_sigterm_gets_sigquit_and_one_that_ignores_both_is_killed(
    launch: Launcher,
) -> None:
    stubborn = [start(launch, f"stubborn{i}", STUBBORN) for i in range(2)]
    deaf = start(launch, "deaf", DEAF)
    started = time.monotonic()
    codes = stop_children([p.process for p in [*stubborn, deaf]], 0.5 * UNIT_S, WORKER_STOP_SIGNALS)
    assert codes == [3, 3, -signal.SIGKILL]
    # Two graces (one per signal), shared by the three processes.
    assert time.monotonic() - started < 3 * UNIT_S
