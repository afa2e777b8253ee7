"""The seed's own commands, verbatim, from the repository root, against a real Redis."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from factorial_ws.constants import WORKERS_KEY_PREFIX
from factorial_ws.supervisor.probes import free_port, port_open
from peers import client
from support import REPO, STOP_TIMEOUT_S, UNIT_S, Launcher, Proc, process_env, wait_until

BIN = Path(sys.executable).parent  # the virtualenv's celery, python and factorial-ws
SEED_WORKER = "celery -A celeryqueue worker --pool=prefork --concurrency=4 --loglevel=INFO -Q soft,hard"
NODE = f"celery@{socket.gethostname()}"  # the seed's command sets no node name
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def seed_env(redis_url: str, ws_port: int) -> dict[str, str]:
    env = process_env(redis_url, WS_PORT=ws_port)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def start_seed_workers(launch: Launcher, commands: dict[str, str], env: dict[str, str]) -> list[Proc]:
    """Run seed worker commands as typed (name -> command), all at once; returns once each one's
    heartbeat is fresh for its queues."""
    started = time.time()
    procs = [
        launch.process(name, command.split(), env, stop_signal=signal.SIGKILL, together=True)
        for name, command in commands.items()
    ]
    queues = {q for command in commands.values() for q in command.split("-Q ")[1].split(",")}
    with redis.Redis.from_url(env["REDIS_URL"]) as store:
        wait_until(
            lambda: all((store.zscore(WORKERS_KEY_PREFIX + q, NODE) or 0) >= started for q in queues),
            what=f"{list(commands.values())} ready",
            watch=procs,
        )
    return procs


def start_seed_gateway(launch: Launcher, env: dict[str, str]) -> Proc:
    proc = launch.process("gateway", ["python", "websocket_celery.py"], env, stop_signal=signal.SIGKILL)
    port = int(env["WS_PORT"])
    wait_until(lambda: port_open(port), what="python websocket_celery.py", watch=[proc])
    return proc


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=60 * UNIT_S)


def json_lines(output: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def seed_system(module_launch: Launcher) -> tuple[dict[str, str], Proc]:
    """Redis, `python websocket_celery.py` and the seed's worker command; the environment the
    seed's commands run in, and the worker."""
    env = seed_env(module_launch.redis().url, free_port())
    start_seed_gateway(module_launch, env)
    (worker,) = start_seed_workers(module_launch, {"worker": SEED_WORKER}, env)
    return env, worker


def test_seed_client_prints_the_ack_and_120_and_exits_0(seed_system: tuple[dict[str, str], Proc]) -> None:
    env, _ = seed_system
    done = run(["python", "websocket_client_send.py"], env)
    assert done.returncode == 0, done.stderr
    ack, result = json_lines(done.stdout)
    assert ack["type"] == "result"
    assert result["type"] == "success" and result["task_id"] == ack["task_id"]
    assert result["result"] == 120
    assert "120" in done.stdout.splitlines()[1]


def test_seed_client_takes_the_number_as_its_argument(seed_system: tuple[dict[str, str], Proc]) -> None:
    env, worker = seed_system
    done = run(["python", "websocket_client_send.py", "10"], env)
    assert done.returncode == 0, done.stderr
    ack, result = json_lines(done.stdout)
    assert result == {**result, "type": "success", "task_id": ack["task_id"], "result": 3628800}
    assert f"factorial_soft[{ack['task_id']}] received" in worker.log()


def test_seed_worker_serves_the_hard_queue_too(seed_system: tuple[dict[str, str], Proc]) -> None:
    env, worker = seed_system
    done = run(["python", "websocket_client_send.py", "1001"], env)
    assert done.returncode == 0, done.stderr
    ack, result = json_lines(done.stdout)
    assert result["result"] == math.factorial(1001)
    assert f"factorial_hard[{ack['task_id']}] received" in worker.log()


def test_websockets_interactive_client_gets_the_replies(seed_system: tuple[dict[str, str], Proc]) -> None:
    env, _ = seed_system
    url = f"ws://localhost:{env['WS_PORT']}/"

    async def session() -> str:
        process = await asyncio.create_subprocess_exec(
            "python", "-m", "websockets", url, env=env, cwd=REPO,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(b'{"type": "factorial", "number": 5}\n')
        await process.stdin.drain()
        output = b""
        async with asyncio.timeout(30 * UNIT_S):
            while b'"result": 120' not in output:
                chunk = await process.stdout.read(4096)
                assert chunk, output
                output += chunk
        process.stdin.close()  # end of input: the client closes the connection and exits
        async with asyncio.timeout(STOP_TIMEOUT_S):
            output += await process.stdout.read()
            assert await process.wait() == 0
        return output.decode()

    output = asyncio.run(session())
    assert f"Connected to {url}." in output
    lines = [line.split("< ", 1)[1] for line in output.split("\n") if "< {" in line]
    replies = [json.loads(line[: line.rindex("}") + 1]) for line in lines]
    assert replies[0]["type"] == "result"
    assert replies[1] == {"type": "success", "task_id": replies[0]["task_id"], "result": 120}


def test_factorial_ws_client_looks_up_a_task_id(seed_system: tuple[dict[str, str], Proc]) -> None:
    env, _ = seed_system
    submitted = run(["factorial-ws", "client", "7"], env)
    assert submitted.returncode == 0, submitted.stderr
    task_id = json_lines(submitted.stdout)[0]["task_id"]
    looked_up = run(["factorial-ws", "client", "--task-id", str(task_id)], env)
    assert looked_up.returncode == 0, looked_up.stderr
    assert json_lines(looked_up.stdout) == [{"type": "success", "task_id": task_id, "result": 5040, "id": 0}]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--task-id", UNKNOWN_ID], "Unknown task id"),
        (["2000000"], "Invalid request: 'number' must be at most 1000000"),
    ],
)
def test_factorial_ws_client_exits_non_zero_on_an_error_reply(
    seed_system: tuple[dict[str, str], Proc], arguments: list[str], message: str
) -> None:
    env, _ = seed_system
    done = run(["factorial-ws", "client", *arguments], env)
    assert done.returncode != 0
    (reply,) = json_lines(done.stdout)
    assert reply["type"] == "error" and reply["result"] == message


def test_factorial_ws_client_exits_non_zero_when_any_reply_is_an_error(
    seed_system: tuple[dict[str, str], Proc],
) -> None:
    env, _ = seed_system
    done = run(["factorial-ws", "client", "5", "--task-id", UNKNOWN_ID], env)
    assert done.returncode != 0
    types = sorted(str(reply["type"]) for reply in json_lines(done.stdout))
    assert types == ["error", "result", "success"]


async def test_seed_split_workers_each_serve_their_own_queue(launch: Launcher) -> None:
    env = seed_env(launch.redis().url, free_port())
    start_seed_gateway(launch, env)
    split = {queue: SEED_WORKER.replace("-Q soft,hard", f"-Q {queue}") for queue in ("soft", "hard")}
    soft, hard = start_seed_workers(launch, split, env)
    async with client(f"ws://127.0.0.1:{env['WS_PORT']}/") as ws:
        small, small_result = await ws.factorial(1000)
        large, large_result = await ws.factorial(1001)
    soft_log, hard_log = soft.log(), hard.log()
    assert small_result["result"] == math.factorial(1000)
    assert large_result["result"] == math.factorial(1001)
    assert f"[{small['task_id']}] received" in soft_log and small["task_id"] not in hard_log
    assert f"[{large['task_id']}] received" in hard_log and large["task_id"] not in soft_log
