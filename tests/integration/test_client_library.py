"""The client library (`factorial_ws.Client`) and the `factorial-ws client` command against real
gateways, workers and Redis: refused handshakes, TLS, typed errors, many requests on one
connection, and an `await` that survives the gateway being killed and restarted."""

from __future__ import annotations

import asyncio
import math
import re
import signal
import subprocess
from pathlib import Path

import gmpy2
import pytest

from factorial_ws import Client, InvalidRequest, ServiceUnavailable, UnknownTaskId
from factorial_ws.supervisor.probes import free_port
from peers import client
from support import PYTHON, REPO, UNIT_S, Launcher, System, paused, process_env, wait_until

from .test_who_may_connect import self_signed_certificate

TOKEN = "client-t0ken"
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def run_cli(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`factorial-ws client ...` as a user runs it."""
    command = [PYTHON, "-m", "factorial_ws", "client", *arguments]
    return subprocess.run(
        command,
        env=env or process_env(None),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60 * UNIT_S,
        check=False,
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit code 1 and one line on stderr naming the cause; never a traceback."""
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


# --- the command line: refused handshakes and TLS ------------------------------------------


def test_cli_without_the_token_says_401_in_one_line(system: System, launch: Launcher) -> None:
    url = launch.in_process_gateway(system.redis_url, WS_TOKEN=TOKEN)

    assert_one_line_error(run_cli("--url", url, "5"), "401", "token")
    done = run_cli("--url", url, "--token", TOKEN, "5")
    assert done.returncode == 0, done.stderr


async def test_cli_to_a_full_gateway_says_503_in_one_line(system: System, launch: Launcher) -> None:
    url = launch.in_process_gateway(system.redis_url, WS_MAX_CONNECTIONS=1)

    async with client(url):  # holds the only connection
        assert_one_line_error(run_cli("--url", url, "5"), "503")


def test_cli_plain_ws_to_a_tls_gateway_says_so_in_one_line(
    system: System, launch: Launcher, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    url = launch.in_process_gateway(system.redis_url, WS_TLS_CERT=cert, WS_TLS_KEY=key)

    assert_one_line_error(run_cli("--url", url, "5"), "wss://")


def test_cli_reaches_a_wss_gateway_with_a_private_certificate_given_by_ca_file(
    system: System, launch: Launcher, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    url = launch.in_process_gateway(system.redis_url, WS_TLS_CERT=cert, WS_TLS_KEY=key)
    wss_url = url.replace("ws://", "wss://")

    assert_one_line_error(run_cli("--url", wss_url, "5"), "certificate", "--ca-file")
    done = run_cli("--url", wss_url, "--ca-file", str(cert), "5")
    assert done.returncode == 0, done.stderr
    assert '"result": 120' in done.stdout


# --- the library against real gateways -----------------------------------------------------


async def test_client_gets_exact_results_digits_and_lookups_from_a_real_gateway(system: System) -> None:
    async with Client(system.url) as first:
        assert await first.factorial(5) == 120
        assert await first.factorial(3000) == math.factorial(3000)  # 9131 digits
        assert await first.factorial(25, digits=True) == str(math.factorial(25))
        handle = await first.submit(2000)
        assert len(handle.task_id) == 36
        assert await handle == math.factorial(2000)

    async with Client(system.url) as second:  # a result is there for any connection
        assert await second.lookup(handle.task_id) == math.factorial(2000)


async def test_client_raises_the_typed_exception_of_each_error_reply(system: System) -> None:
    async with Client(system.url) as c:
        with pytest.raises(InvalidRequest) as invalid:
            await c.factorial(2_000_000)
        assert invalid.value.message == "Invalid request: 'number' must be at most 1000000"
        with pytest.raises(UnknownTaskId) as unknown:
            await c.lookup(UNKNOWN_ID)
        assert unknown.value.task_id == UNKNOWN_ID
        assert await c.factorial(6) == 720  # the connection goes on


async def test_client_raises_service_unavailable_when_the_gateway_has_no_redis(launch: Launcher) -> None:
    server = launch.redis()
    url = launch.in_process_gateway(server.url)
    server.stop()

    async with Client(url) as c:
        with pytest.raises(ServiceUnavailable):
            await asyncio.wait_for(c.factorial(5), 30 * UNIT_S)


async def test_many_requests_in_flight_share_one_connection(system: System, launch: Launcher) -> None:
    # 67 of them hard, all queued at once: the default budgets, in digits of n!, take them all.
    gateway, url = launch.gateway(system.redis_url, ACCESS_LOG=1)
    numbers = [n * 37 % 1500 for n in range(200)]  # soft and hard, in no order

    async with Client(url) as c:
        results = await asyncio.wait_for(asyncio.gather(*(c.factorial(n) for n in numbers)), 60 * UNIT_S)

    assert results == [math.factorial(n) for n in numbers]
    assert gateway.log().count(" connect peer=") == 1


async def test_an_await_survives_the_gateway_killed_and_restarted_on_the_same_port(launch: Launcher) -> None:
    server = launch.redis()
    port = free_port()
    # asyncio.to_thread's threads last as long as the test's event loop, so the processes they
    # start live through the test (a process gets its parent-death signal when its thread ends).
    # The hard worker starts beside the gateway, then stays frozen until the new gateway has
    # looked the task up: till then the task waits in its queue, as with no worker at all.
    (old, url), hard = launch.side_by_side(
        lambda: launch.gateway(server.url, port=port, ACCESS_LOG=1),
        lambda: launch.worker(server.url, queues="hard", concurrency=1),
    )

    async with Client(url) as c:
        with paused(hard.pid):
            # No live worker: the task waits in its queue while the gateway dies.
            waiting = asyncio.create_task(c.factorial(300_000))
            await asyncio.to_thread(wait_until, lambda: "number=300000" in old.log(), what="the request")
            request = re.search(r"request task_id=(\S+) number=300000", old.log())
            assert request is not None
            task_id = request.group(1)
            old.signal(signal.SIGKILL)
            await asyncio.to_thread(old.process.wait)
            await asyncio.to_thread(wait_until, lambda: not c.connected, what="the client to see the drop")
            assert not waiting.done()

            new, _ = await asyncio.to_thread(
                launch.gateway, server.url, port=port, name="gateway-restarted", ACCESS_LOG=1
            )
            # The new gateway never saw the factorial request: the client asks again by the
            # task's id (a lookup), while the task still waits.
            await asyncio.to_thread(wait_until, lambda: "request task_id=" in new.log(), what="the ask")
            assert f"request task_id={task_id} detail=lookup" in new.log()
            assert not waiting.done()
        result = await asyncio.wait_for(waiting, 60 * UNIT_S)

    assert result == int(gmpy2.fac(300_000))


async def test_an_await_outlasts_the_gateways_wait_limit(launch: Launcher) -> None:
    server = launch.redis()
    (gateway, url), hard = launch.side_by_side(
        lambda: launch.gateway(server.url, HARD_TASK_TIMEOUT=1, ACCESS_LOG=1),
        lambda: launch.worker(server.url, queues="hard", concurrency=1),
    )

    async with Client(url) as c:
        with paused(hard.pid):  # as with no worker: the gateway gives up waiting
            waiting = asyncio.create_task(c.factorial(2000))
            await asyncio.to_thread(
                wait_until,
                lambda: gateway.log().count("detail=Timeout error") >= 2 or waiting.done(),
                what="two timeouts",
            )
            assert not waiting.done()  # the gateway's "Timeout error" did not end the await
        assert await asyncio.wait_for(waiting, 30 * UNIT_S) == math.factorial(2000)
    assert "detail=lookup" in gateway.log()
