"""A child process kept running: when it exits it is started again, after a delay that doubles
with each exit in the last minute, until it exits so often that the supervisor gives up.

`up` keeps its workers and gateways this way, and a multi-process gateway its gateway processes.
"""

from __future__ import annotations

import logging
import subprocess
import time
from dataclasses import dataclass, field

from ..processes import start_child

logger = logging.getLogger(__name__)

# Restarts
FIRST_RESTART_DELAY_S = 0.5  # after the first exit; doubled for each further one in the window
MAX_RESTART_DELAY_S = 30.0
RESTART_WINDOW_S = 60.0
MAX_EXITS_IN_WINDOW = 5  # one more within RESTART_WINDOW_S and the supervisor gives up


@dataclass
class SupervisedChild:
    """``start()`` it, then call ``keep_running()`` every fraction of a second."""

    name: str
    command: list[str]
    env: dict[str, str] | None = None
    process: subprocess.Popen[bytes] | None = None
    exits: list[float] = field(default_factory=list)  # monotonic times of recent exits
    restart_at: float | None = None  # set while waiting to start it again

    @property
    def pid(self) -> int | None:
        """The running process's pid; None while it waits to be started again."""
        return self.process.pid if self.process is not None and self.restart_at is None else None

    def start(self) -> None:
        # SIGKILL when we die: workers and gateways keep nothing worth saving (unacknowledged
        # tasks are redelivered), and one left running after us would be an orphan.
        self.process = start_child(self.command, self.env)
        self.restart_at = None

    def keep_running(self) -> bool:
        """Start the child again if it exited and its delay is over; False once it has exited
        more than MAX_EXITS_IN_WINDOW times within RESTART_WINDOW_S (it is left stopped)."""
        now = time.monotonic()
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.start()
            return True
        assert self.process is not None, "start() it first"
        code = self.process.poll()
        if code is None:
            return True
        self.exits = [t for t in self.exits if now - t < RESTART_WINDOW_S] + [now]
        if len(self.exits) > MAX_EXITS_IN_WINDOW:
            logger.error(
                "%s %d exited (code %s), %d times within %.0f s; giving up",
                self.name, self.process.pid, code, len(self.exits), RESTART_WINDOW_S,
            )  # fmt: skip
            return False
        delay_s = min(FIRST_RESTART_DELAY_S * 2 ** (len(self.exits) - 1), MAX_RESTART_DELAY_S)
        logger.warning(
            "%s %d exited (code %s); starting another in %g s", self.name, self.process.pid, code, delay_s
        )
        self.restart_at = now + delay_s
        return True


def running_processes(children: list[SupervisedChild]) -> list[subprocess.Popen[bytes]]:
    """The processes of ``children`` that are running (not waiting to be started again)."""
    return [child.process for child in children if child.process is not None and child.pid is not None]
