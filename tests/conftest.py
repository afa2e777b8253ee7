from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_timeout import get_env_settings

from factorial_ws.supervisor.redis_server import RedisServer
from support import UNIT_S, Launcher, System

sys.set_int_max_str_digits(0)  # tests compare exact results with millions of digits

TESTS = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test by its folder (unit, integration, browser), stretch pytest-timeout's
    limit by the same factor as every other timeout of the suite, and put the files marked
    ``long`` first: the test processes take files in this order, so a long one left for last
    would run on alone while the others have ended."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)  # stable: files stay whole
    default_timeout_s = get_env_settings(config).timeout
    for item in items:
        if TESTS in item.path.parents:
            item.add_marker(item.path.relative_to(TESTS).parts[0])
        marker = item.get_closest_marker("timeout")
        timeout_s = marker.args[0] if marker and marker.args else default_timeout_s
        if timeout_s:
            item.add_marker(pytest.mark.timeout(timeout_s * UNIT_S), append=False)  # the closest


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launcher]:
    """Starts real Redis servers, workers, gateways and other processes for one test, and stops
    every one of them when the test ends."""
    with Launcher(tmp_path) as launcher:
        yield launcher


@pytest.fixture(scope="module")
def module_launch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    """The same for the module-scoped fixtures of one test file: stops them after its last test."""
    with Launcher(tmp_path_factory.mktemp("module")) as launcher:
        yield launcher


@pytest.fixture(scope="module")
def module_redis(module_launch: Launcher) -> RedisServer:
    """One private Redis for the module-scoped fixtures of a test file."""
    return module_launch.redis()


@pytest.fixture
def redis_server(launch: Launcher) -> RedisServer:
    """A private, real Redis on a free port, with an append-only file."""
    return launch.redis()


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """One shared system (Redis, a worker for both queues, the gateway) for tests that only
    talk to it as clients; tests that break things start their own."""
    with Launcher(tmp_path_factory.mktemp("system")) as launcher:
        yield launcher.system()


@pytest.fixture
def default_int_digit_limit() -> Iterator[None]:
    """CPython's default limit on int() of a decimal string, as in the gateway or a client (the
    test session lifts it to compare big results)."""
    saved = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(4300)
    yield
    sys.set_int_max_str_digits(saved)
