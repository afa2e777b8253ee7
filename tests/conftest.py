from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.set_int_max_str_digits(0)  # tests compare exact results with millions of digits

from factorial_ws.supervisor.redis_server import RedisServer  # noqa: E402
from support import Launcher, System  # noqa: E402


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launcher]:
    """Starts real Redis servers, workers, gateways and other processes for one test, and stops
    every one of them when the test ends."""
    launcher = Launcher(tmp_path)
    yield launcher
    launcher.close()


@pytest.fixture
def redis_server(launch: Launcher) -> RedisServer:
    """A private, real Redis on a free port, with an append-only file."""
    return launch.redis()


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """One shared system (Redis, a worker for both queues, the gateway) for tests that only
    talk to it as clients; tests that break things start their own."""
    launcher = Launcher(tmp_path_factory.mktemp("system"))
    yield launcher.system()
    launcher.close()
