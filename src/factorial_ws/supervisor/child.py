"""A child process kept running: when it exits it is started again, after a delay that doubles
with each exit in the last minute, up to MAX_RESTART_DELAY_S. The supervisor never gives up on
it: one child that keeps failing (a worker that Redis keeps refusing) must not take the others
down with it. While it keeps failing, ``problem()`` says so, for /healthz.

`up` keeps its workers and gateways this way, and a multi-process gateway its gateway processes.
"""

from __future__ import annotations

import logging
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .processes import start_child

logger = logging.getLogger(__name__)

# Restarts
# After the first exit (the default of RESTART_DELAY); doubled for each further one in the window.
FIRST_RESTART_DELAY_S = 0.5
MAX_RESTART_DELAY_S = 30.0
RESTART_WINDOW_S = 60.0
# A child that exited this often within RESTART_WINDOW_S is reported as failing even while it
# runs again (it is reported, too, while it waits to be started again).
FAILING_EXITS = 2


@dataclass
class SupervisedChild:
    """``start()`` it, then call ``keep_running()`` every fraction of a second."""

    name: str
    command: list[str]
    env: dict[str, str] | None = None
    log_path: Path | None = None  # where its output goes; None: our terminal
    cwd: Path | None = None
    first_restart_delay_s: float = FIRST_RESTART_DELAY_S
    process: subprocess.Popen[bytes] | None = None
    exits: list[float] = field(default_factory=list)  # monotonic times of recent exits
    restart_at: float | None = None  # set while waiting to start it again
    last_code: int | None = None  # of its last exit

    @property
    def pid(self) -> int | None:
        """The running process's pid; None while it waits to be started again."""
        return self.process.pid if self.process is not None and self.restart_at is None else None

    def start(self) -> None:
        # SIGKILL when we die: workers and gateways keep nothing worth saving (unacknowledged
        # tasks are redelivered), and one left running after us would be an orphan.
        self.process = start_child(self.command, self.env, log_path=self.log_path, cwd=self.cwd)
        self.restart_at = None

    def keep_running(self) -> None:
        """Start the child again if it exited and its delay is over."""
        now = time.monotonic()
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.start()
            return
        assert self.process is not None, "start() it first"
        code = self.process.poll()
        if code is None:
            return
        self.exits = [*self._recent_exits(now), now]
        self.last_code = code
        delay_s = min(self.first_restart_delay_s * 2 ** (len(self.exits) - 1), MAX_RESTART_DELAY_S)
        logger.warning(
            "%s %d exited (code %s); starting another in %g s (exit %d within %.0f s)",
            self.name, self.process.pid, code, delay_s, len(self.exits), RESTART_WINDOW_S,
        )  # fmt: skip
        self.restart_at = now + delay_s

    def problem(self) -> str | None:
        """What /healthz says of this child while it keeps failing; None while it is fine."""
        now = time.monotonic()
        exits = self._recent_exits(now)
        if self.restart_at is None and len(exits) < FAILING_EXITS:
            return None
        text = (
            f"{self.name} exited {len(exits)} times in the last {RESTART_WINDOW_S:.0f} s "
            f"(last code {self.last_code})"
        )
        if self.restart_at is not None:
            return f"{text}; next start in {max(0.0, self.restart_at - now):.0f} s"
        return text

    def _recent_exits(self, now: float) -> list[float]:
        return [t for t in self.exits if now - t < RESTART_WINDOW_S]


def running_processes(children: list[SupervisedChild]) -> list[subprocess.Popen[bytes]]:
    """The processes of ``children`` that are running (not waiting to be started again)."""
    return [child.process for child in children if child.process is not None and child.pid is not None]
