"""A supervised child that keeps exiting is started again, later and later, for as long as its
supervisor runs: never given up on (which took the whole of `up` down with it)."""

from __future__ import annotations

import sys
import time

import pytest

from factorial_ws.config import Config
from factorial_ws.supervisor import child as child_module
from factorial_ws.supervisor.child import SupervisedChild
from factorial_ws.supervisor.gateways import gateway_children
from factorial_ws.supervisor.local_system import LocalSystem

FAILS_AT_ONCE = [sys.executable, "-c", "raise SystemExit(3)"]


def _exits(child: SupervisedChild, count: int) -> list[float]:
    """Keep ``child`` running until it has exited ``count`` times; the delay before each start."""
    delays_s: list[float] = []
    deadline = time.monotonic() + 10.0
    while len(delays_s) < count:
        assert time.monotonic() < deadline, f"not started again after {len(delays_s)} exits"
        child.keep_running()
        if child.restart_at is not None and (not delays_s or child.restart_at != delays_s[-1]):
            delays_s.append(child.restart_at)
        time.sleep(0.005)
    return [at - exited for at, exited in zip(delays_s, child.exits[-count:], strict=True)]


def test_a_child_that_keeps_exiting_is_restarted_with_capped_exponential_delays(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(child_module, "MAX_RESTART_DELAY_S", 0.04)
    child = SupervisedChild("hard worker", FAILS_AT_ONCE, first_restart_delay_s=0.01)
    child.start()
    delays_s = _exits(child, 8)
    assert [round(delay, 3) for delay in delays_s] == [0.01, 0.02, 0.04, 0.04, 0.04, 0.04, 0.04, 0.04]
    problem = child.problem()
    assert problem is not None and problem.startswith("hard worker exited 8 times in the last 60 s"), problem


def test_the_restart_delay_setting_is_every_child_s_first_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    """RESTART_DELAY reaches the workers and gateway of `up` and each process of a multi-process
    gateway (they are built here, not started)."""
    monkeypatch.setattr(SupervisedChild, "start", lambda self: None)
    config = Config(restart_delay_s=0.25)
    children = [
        *LocalSystem(config, env={}).start().children,
        *gateway_children(config.replace(ws_processes=2), {}),
    ]
    assert len(children) == 5
    assert {child.first_restart_delay_s for child in children} == {0.25}
    assert SupervisedChild("default", FAILS_AT_ONCE).first_restart_delay_s == Config().restart_delay_s
