"""`factorial-ws up` on a port another process already listens on: it says so in one line,
exits non-zero and leaves nothing running."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from factorial_ws.supervisor.probes import free_port, listening_pids
from support import FACTORIAL_WS, PYTHON, UNIT_S, Launcher, Proc, process_env, wait_until

from .test_up import assert_serves_factorial_of_5, start_up, up_env

HOLD_PORT = """
import socket, sys, time
sock = socket.socket()
if sys.argv[2] == "reuse-port":  # as a gateway of another run would
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
sock.bind(("127.0.0.1", int(sys.argv[1])))
sock.listen()
time.sleep(600)
"""


def hold_port(launch: Launcher, port: int, how: str) -> Proc:
    holder = launch.process("holder", [PYTHON, "-c", HOLD_PORT, str(port), how], process_env(None))
    wait_until(lambda: listening_pids(port) == {holder.pid}, what=f"port {port} held", watch=[holder])
    return holder


def started_by(data_dir: Path) -> list[str]:
    """Command lines of live processes whose environment names ``data_dir``: whatever that
    `up` started (Redis, workers, gateways all inherit its FACTORIAL_WS_DATA_DIR)."""
    marker = f"FACTORIAL_WS_DATA_DIR={data_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return found


@pytest.mark.parametrize(
    ("how", "processes"),
    [("plain", 1), ("reuse-port", 2)],
    ids=["held-by-a-plain-listener", "shared-with-a-reuse-port-listener"],
)
def test_up_on_a_taken_port_exits_non_zero_with_one_line_naming_it_and_leaves_nothing(
    launch: Launcher, tmp_path: Path, how: str, processes: int
) -> None:
    port = free_port()
    holder = hold_port(launch, port, how)
    env = {**up_env(tmp_path / "data", port=port), "WS_HOST": "127.0.0.1", "WS_PROCESSES": str(processes)}
    done = subprocess.run([FACTORIAL_WS, "up"], env=env, capture_output=True, text=True, timeout=60 * UNIT_S)
    output = (done.stdout + done.stderr).strip()
    assert done.returncode != 0, output
    assert "is up" not in output
    lines = output.splitlines()
    assert len(lines) == 1 and f"port {port}" in lines[0] and str(holder.pid) in lines[0], output
    assert started_by(tmp_path / "data") == []
    assert listening_pids(port) == {holder.pid}


def test_up_whose_redis_port_is_taken_runs_its_redis_on_another_and_prints_its_url(
    launch: Launcher, tmp_path: Path
) -> None:
    redis_port = free_port()
    holder = hold_port(launch, redis_port, "plain")
    env = {**up_env(tmp_path / "data"), "REDIS_PORT": str(redis_port)}
    up = start_up(launch, env)
    assert f"port {redis_port} is taken" in up.log(), up.log()
    found = re.search(r"REDIS_URL=redis://127\.0\.0\.1:(\d+)/0", up.log())
    assert found and int(found[1]) != redis_port, up.log()
    assert_serves_factorial_of_5(env)
    assert listening_pids(redis_port) == {holder.pid}
