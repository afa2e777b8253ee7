from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.set_int_max_str_digits(0)  # tests compare exact results with millions of digits

from factorial_ws.supervisor.redis_server import RedisServer  # noqa: E402
from support import System, running_system  # noqa: E402


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private, real Redis on a free port, with an append-only file."""
    with RedisServer(tmp_path / "redis") as server:
        yield server


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """One shared system (Redis, a worker for both queues, the gateway) for tests that only
    talk to it as clients; tests that break things start their own."""
    with running_system(tmp_path_factory.mktemp("system")) as running:
        yield running
