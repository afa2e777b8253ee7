"""The shared metrics of a multi-process gateway with its processes supervised: a process that
dies and is started again leaves its counters in the totals and drops out of the gauges, and
`up`, which starts each gateway process itself, gives them the shared folder too."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path

from factorial_ws.gateway.metrics import MULTIPROCESS_DIR_VARIABLE
from factorial_ws.supervisor.probes import free_port
from support import UNIT_S, Launcher, wait_until

from .fault_tools import descendants_of, http_get, kill, metric, start_gateways
from .test_gateway_metrics import CONNECTIONS, PROCESSES, SCRAPES, connect_and_look_up, health_report, sample
from .test_up import command_line, start_up, stop_and_assert_nothing_left, up_env

REQUESTS_COUNTED = 'factorial_ws_requests_total{type="result"}'


async def test_a_restarted_gateway_process_keeps_its_counts_and_leaves_the_gauges(launch: Launcher) -> None:
    parent, port, children = start_gateways(launch, launch.redis().url)
    url = f"ws://127.0.0.1:{port}/"

    async with contextlib.AsyncExitStack() as stack:
        await connect_and_look_up(stack, url)
        assert metric(url, "factorial_ws_connections_open") == CONNECTIONS

        # Killed with its connections open: it cannot take its own gauges down.
        kill(children[0], signal.SIGKILL)
        wait_until(lambda: parent.log().count("gateway listening") == PROCESSES + 1, what="a new process")
    # Every client connection is closed now (those of the killed process were dropped).
    wait_until(
        lambda: metric(url, "factorial_ws_connections_open") == 0,
        10 * UNIT_S,
        what="the open-connections gauge of every process to reach 0",
    )
    for scrape in range(SCRAPES):
        # Built after the state above (the first read of each page waits for that), then
        # unchanged: the other scrapes only reach either process.
        fresh = scrape == 0
        page = http_get(url, "/metrics", fresh=fresh)
        assert sample(page, REQUESTS_COUNTED) == CONNECTIONS  # the dead process's requests still count
        assert sample(page, "factorial_ws_gateway_processes") == PROCESSES
        health = health_report(url, fresh=fresh)
        assert health["gateway_processes"] == PROCESSES, health
        assert health["result_subscription"] is True, health


def metrics_folder(pid: int) -> Path | None:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    for entry in environ:
        name, _, value = entry.decode().partition("=")
        if name == MULTIPROCESS_DIR_VARIABLE:
            return Path(value)
    return None


def test_up_gives_its_gateway_processes_one_metrics_folder_and_removes_it(
    launch: Launcher, tmp_path: Path
) -> None:
    port = free_port()
    env = {**up_env(tmp_path / "data", port=port), "WS_PROCESSES": str(PROCESSES)}
    up = start_up(launch, env)
    gateways = [pid for pid in descendants_of(up.pid) if " serve" in command_line(pid)]
    folders = {metrics_folder(pid) for pid in gateways}
    assert len(gateways) == PROCESSES and len(folders) == 1, folders
    folder = folders.pop()
    assert folder is not None and folder.is_dir()
    url = f"ws://localhost:{port}/"
    for _ in range(SCRAPES):  # whichever process answers reports both (nothing changes meanwhile)
        assert health_report(url, fresh=False)["gateway_processes"] == PROCESSES
        assert sample(http_get(url, "/metrics", fresh=False), "factorial_ws_gateway_processes") == PROCESSES
    stop_and_assert_nothing_left(launch, up, signal.SIGTERM)
    assert not folder.exists()
