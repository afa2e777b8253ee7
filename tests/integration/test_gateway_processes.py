"""Several gateway processes on one port (``WS_PROCESSES=2``): the children die with their
parent, however it dies, and a child that dies is started again."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

import pytest

from factorial_ws.gateway.metrics import MULTIPROCESS_DIR_VARIABLE
from factorial_ws.supervisor.probes import port_open
from support import UNIT_S, Launcher, wait_until

from .fault_tools import children_of, descendants_of, is_running, kill, start_gateways, wait_gone
from .test_up import command_line, start_up, stop_and_assert_nothing_left, up_env

PROCESSES = 2


@dataclass(frozen=True)
class KilledParent:
    redis_url: str
    port: int
    children: list[int]
    metrics_folder: Path  # its children's
    metrics_folder_was_there: bool  # before the kill


@pytest.fixture(scope="module")
def killed_parent(module_launch: Launcher) -> KilledParent:
    """Gateway processes whose parent was killed with SIGKILL, for the two tests of what that
    leaves: one start for both. Neither disturbs the other: the first only looks, the second
    starts gateways of its own on another port."""
    redis_url = module_launch.redis().url
    parent, port, children = start_gateways(module_launch, redis_url, PROCESSES)
    folder = metrics_folder_of(children[0])
    was_there = folder.is_dir()
    kill(parent.pid, signal.SIGKILL)
    return KilledParent(redis_url, port, children, folder, was_there)


def test_gateway_children_die_with_their_parent_killed_with_sigkill_and_free_the_port(
    killed_parent: KilledParent,
) -> None:
    wait_gone(killed_parent.children, timeout_s=10 * UNIT_S)
    port = killed_parent.port
    wait_until(lambda: not port_open(port), 5 * UNIT_S, what=f"port {port} to be released")


def metrics_folder_of(pid: int) -> Path:
    """The shared metrics folder a gateway child was given (its PROMETHEUS_MULTIPROC_DIR)."""
    variables = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    prefix = MULTIPROCESS_DIR_VARIABLE.encode() + b"="
    return Path(next(v for v in variables if v.startswith(prefix))[len(prefix) :].decode())


def test_the_metrics_folder_of_a_parent_killed_with_sigkill_is_removed_by_the_next_start(
    launch: Launcher, killed_parent: KilledParent
) -> None:
    folder = killed_parent.metrics_folder
    assert killed_parent.metrics_folder_was_there, folder
    wait_gone(killed_parent.children, timeout_s=10 * UNIT_S)
    assert folder.is_dir(), "a parent killed outright cannot remove it itself"
    _, _, new_children = start_gateways(launch, killed_parent.redis_url, PROCESSES, name="gateways again")
    assert not folder.exists(), f"{folder} left by the killed parent is still there"
    assert metrics_folder_of(new_children[0]).is_dir()


def test_a_gateway_child_that_dies_is_started_again_after_a_backoff_and_logged(launch: Launcher) -> None:
    server = launch.redis()
    parent, port, children = start_gateways(launch, server.url, PROCESSES)
    victim = children[0]
    kill(victim, signal.SIGKILL)
    wait_until(lambda: parent.log().count("gateway listening") == PROCESSES + 1, what="a new gateway child")
    assert f"gateway process {victim} exited (code -9); starting another in" in parent.log()
    replacements = children_of(parent.pid)
    assert len(replacements) == PROCESSES and victim not in replacements
    assert not is_running(victim)
    assert port_open(port)

    # It dies again at once: the next start waits longer.
    kill(next(pid for pid in replacements if pid not in children), signal.SIGKILL)
    wait_until(lambda: parent.log().count("gateway listening") == PROCESSES + 2, what="another gateway child")
    delays = [
        float(line.rsplit(" in ", 1)[1].split()[0])
        for line in parent.log().splitlines()
        if "starting another in" in line
    ]
    assert len(delays) == 2 and delays[1] > delays[0], delays
    assert parent.alive()


def test_up_records_every_gateway_process_in_its_pid_list_and_stops_them_all(
    launch: Launcher, tmp_path: Path
) -> None:
    env = {**up_env(tmp_path / "data"), "WS_PROCESSES": str(PROCESSES)}
    up = start_up(launch, env)
    wait_until(lambda: up.log().count("gateway listening") == PROCESSES, what="both gateways")
    gateways = {pid for pid in descendants_of(up.pid) if " serve" in command_line(pid)}
    assert len(gateways) >= PROCESSES, [command_line(pid) for pid in gateways]
    recorded = {int(line.split()[0]) for line in (tmp_path / "data" / "up.pids").read_text().splitlines()}
    # Every gateway process, not only one that starts the others: a restart after a `kill -9`
    # of `up` must be able to find each of them.
    assert gateways <= recorded, (gateways, recorded)
    stop_and_assert_nothing_left(launch, up, signal.SIGTERM)
