"""Test support: the real processes (Redis, Celery workers, the gateway) and the suite's timeouts.

Nothing here is a fake: every helper starts the same programs a user runs. Tests get them from the
``launch`` fixture (a ``Launcher``), which stops whatever it started when the test ends. A test that
only speaks the protocol runs the gateway in its own process (``in_process_gateway``: the same
``Gateway``, without a process's start-up); one about processes, logs or metrics starts it as one.

Every timeout of the suite is a multiple of ``UNIT_S``; on a slow machine set
``FACTORIAL_WS_TEST_TIMEOUT_FACTOR`` (e.g. 3) to stretch them all at once.

The test's side of the WebSocket (the clients a test connects with) is in ``peers.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import inspect
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
import uvloop

from factorial_ws.config import Config, env_name
from factorial_ws.gateway.routes import RESPONSE_CACHE_S
from factorial_ws.gateway.server import Gateway
from factorial_ws.redis_clients import sync_client
from factorial_ws.supervisor import processes
from factorial_ws.supervisor.gateways import gateway_command
from factorial_ws.supervisor.local_system import LocalSystem, Worker
from factorial_ws.supervisor.probes import free_port, port_open
from factorial_ws.supervisor.processes import start_child, stop_child, stop_children
from factorial_ws.supervisor.redis_server import RedisServer
from factorial_ws.supervisor.sentinel import RedisGroup, Timing
from factorial_ws.worker.processes import worker_command, worker_is_live

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
FACTORIAL_WS = str(Path(sys.executable).parent / "factorial-ws")  # the command a user runs

# One second of test time; every timeout below and in the tests is a multiple of it.
UNIT_S = float(os.environ.get("FACTORIAL_WS_TEST_TIMEOUT_FACTOR", "1"))
START_TIMEOUT_S = 30 * UNIT_S
REPLY_TIMEOUT_S = 15 * UNIT_S
STOP_TIMEOUT_S = 15 * UNIT_S

# Variables of ours that must not leak from the developer's shell into the processes under test.
_OUR_VARIABLES = {env_name(f.name) for f in dataclasses.fields(Config)}


# The gateway builds /healthz and /metrics at most once a second per process and answers that build
# meanwhile (gateway/routes.py): a test reading one again sooner would see the state before its
# last step. Each read waits until the previous read of the same page has ended that long ago.
_STATUS_PAGE_READS: dict[str, float] = {}


@contextlib.contextmanager
def fresh_status_page(url: str) -> Iterator[None]:
    """Around a GET of ``url`` (/healthz or /metrics): its answer is built after the GET began."""
    if urlsplit(url).path not in ("/healthz", "/metrics"):
        yield
        return
    last_s = _STATUS_PAGE_READS.get(url)
    if last_s is not None:
        time.sleep(max(0.0, last_s + RESPONSE_CACHE_S - time.monotonic()))
    try:
        yield
    finally:
        _STATUS_PAGE_READS[url] = time.monotonic()


def process_env(redis_url: str | None, **settings: Any) -> dict[str, str]:
    """The environment for a process under test: ours cleared, then ``settings`` by env name."""
    env = {k: v for k, v in os.environ.items() if k not in _OUR_VARIABLES}
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    else:  # for `up`: a private Redis on a port of its own, as tests run side by side
        env["REDIS_PORT"] = str(free_port())
    env.update({name: str(value) for name, value in settings.items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


def wait_until(
    predicate: Callable[[], object],
    timeout_s: float = START_TIMEOUT_S,
    what: str = "condition",
    *,
    watch: Iterable[Proc] = (),
) -> None:
    """Return once ``predicate()`` is true; fail after ``timeout_s``, or at once when one of the
    ``watch`` processes exits."""
    processes.wait_until(predicate, timeout_s, what, watch=[proc.process for proc in watch])


async def until(
    predicate: Callable[[], object | Awaitable[object]],
    timeout_s: float = REPLY_TIMEOUT_S,
    what: str = "condition",
) -> None:
    """``wait_until`` for a test whose event loop must go on meanwhile: return once
    ``predicate()`` (awaited if it returns an awaitable) is true; fail by assertion after
    ``timeout_s``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not await _value(predicate()):
        assert loop.time() < end, f"not within {timeout_s:g} s: {what}"
        await asyncio.sleep(0.01)


async def _value(result: object | Awaitable[object]) -> object:
    return await result if inspect.isawaitable(result) else result


@dataclass
class Proc:
    """A child process whose output goes to a log file (read it in assertions)."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(sig)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        return stop_child(self.process, timeout_s)


@contextlib.contextmanager
def paused(*pids: int) -> Iterator[None]:
    """The processes frozen (SIGSTOP) for the block, then continued, however the block ends."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


@dataclass
class System:
    """Redis, workers and one gateway, all real processes."""

    redis: RedisServer
    log_dir: Path
    workers: list[Proc] = field(default_factory=list)
    gateway: Proc | None = None
    url: str = ""

    @property
    def redis_url(self) -> str:
        return self.redis.url


@dataclass(frozen=True)
class _Stop:
    """One thing a Launcher undoes at the end: a call, or a process to stop with a signal."""

    call: Callable[[], object] | None = None
    process: subprocess.Popen[bytes] | None = None
    stop_signal: int = signal.SIGTERM
    # Stopped at once with its neighbours in the list that may be too (workers and gateways:
    # one after another, their stops would add up).
    together: bool = False

    def stops_with(self, other: _Stop) -> bool:
        return self.together and other.together


def _stop_together(stops: list[_Stop]) -> None:
    """Each process its own signal; those killed first (it takes no time), then the others share
    one grace period per signal."""
    by_signal: dict[int, list[subprocess.Popen[bytes]]] = {}
    for stop in sorted(stops, key=lambda stop: stop.stop_signal != signal.SIGKILL):
        if stop.process is not None:
            by_signal.setdefault(stop.stop_signal, []).append(stop.process)
    for sig, batch in by_signal.items():
        stop_children(batch, STOP_TIMEOUT_S, (sig,))


class Launcher:
    """Starts the real processes of one test, and stops them all (newest first) when it ends:
    the ``launch`` fixture. Test bodies then need no ``finally:`` of their own. Workers,
    gateways and ``up`` are killed then, not stopped warm: nothing is asserted at that point."""

    def __init__(self, tmp_dir: Path) -> None:
        self.tmp_dir = tmp_dir
        self.log_dir = tmp_dir / "logs"
        self._stops: list[_Stop] = []
        self._threads: ThreadPoolExecutor | None = None  # of side_by_side

    def __enter__(self) -> Launcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop everything started so far, newest first (each stop runs even if one fails, and
        the first failure is raised at the end); neighbouring workers and gateways together."""
        stops, self._stops = self._stops[::-1], []
        failures: list[BaseException] = []
        while stops:
            first = stops.pop(0)
            try:
                if first.call is not None:
                    first.call()
                    continue
                batch = [first]
                while stops and first.stops_with(stops[0]):
                    batch.append(stops.pop(0))
                _stop_together(batch)
            except Exception as exc:
                failures.append(exc)
        if failures:
            raise failures[0]

    def callback(self, function: Callable[..., object], *args: Any) -> None:
        """Call ``function(*args)`` at the end too, among the stops (newest first)."""
        self._stops.append(_Stop(call=functools.partial(function, *args)))

    def side_by_side(self, *starts: Callable[[], Any]) -> list[Any]:
        """Call ``starts`` (``worker``, ``gateway``: each waits until its process is ready) at
        once, each on a thread, and return what each returned. The threads last until the end:
        a process gets its parent-death signal when the thread that started it ends."""
        if self._threads is None:
            self._threads = ThreadPoolExecutor()
            self.callback(self._threads.shutdown)  # after the processes started since
        futures = [self._threads.submit(start) for start in starts]
        return [future.result() for future in futures]

    def process(
        self,
        name: str,
        command: list[str],
        env: dict[str, str],
        *,
        stop_signal: int = signal.SIGTERM,
        together: bool = False,
    ) -> Proc:
        """Any command, run from the repository root; its output goes to ``log_dir/<name>.log``.
        It dies with the test run however that ends, and gets ``stop_signal`` at the end
        (``together``: at once with the neighbouring processes started so, see ``_Stop``)."""
        log_path = self.log_dir / f"{name}.log"
        proc = Proc(name, start_child(command, env, log_path=log_path, cwd=REPO), log_path)
        self._stops.append(_Stop(process=proc.process, stop_signal=stop_signal, together=together))
        return proc

    def redis(
        self,
        *,
        name: str = "redis",
        port: int | None = None,
        password: str | None = None,
        persistent: bool = True,
    ) -> RedisServer:
        """A real Redis on a free port (or ``port``, to restart one on its data)."""
        return self.start_redis(
            RedisServer(self.tmp_dir / name, port=port, password=password, persistent=persistent)
        )

    def start_redis(self, server: RedisServer) -> RedisServer:
        """Start ``server`` (a RedisServer of any kind) and stop it at the end."""
        self.callback(server.stop)
        return server.start()

    def sentinel_group(
        self,
        *,
        name: str = "group",
        replicas: int = 1,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        password: str | None = None,
        sentinel_password: str | None = None,
    ) -> RedisGroup:
        """A master, ``replicas`` replicas and three Sentinels that fail over quickly; pass
        ``group.url`` as the Redis URL and ``**group_settings(group)`` as settings."""
        group = RedisGroup(
            self.tmp_dir / name,
            replicas=replicas,
            password=password,
            sentinel_password=sentinel_password,
            timing=Timing(down_after_ms=down_after_ms, failover_timeout_ms=failover_timeout_ms),
            persistent=False,
        )
        self.callback(group.stop)
        return group.start()

    def worker(
        self,
        redis_url: str,
        *,
        queues: str = "soft,hard",
        concurrency: int = 2,
        name: str | None = None,
        app: str = "celeryqueue",
        stop_signal: int = signal.SIGKILL,
        **settings: Any,
    ) -> Proc:
        """A real Celery worker (the seed's ``-A celeryqueue`` by default); returns once its
        heartbeat shows it consuming every queue. At the end it is killed (SIGKILL; its pool
        processes die with it, by their parent-death signal): a warm shutdown (SIGTERM, it
        finishes its tasks first) or a cold one (SIGQUIT) costs 2-4 s that only a test about
        shutdown needs, and such a test stops the worker itself (``proc.stop()``, ``signal``)."""
        name = name or f"w{free_port()}"
        hostname = worker_hostname(name)
        command = worker_command(queues, concurrency=concurrency, hostname=hostname, app=app)
        env = process_env(redis_url, **settings)
        proc = self.process(name, command, env, stop_signal=stop_signal, together=True)
        with redis_client(redis_url, **settings) as client:
            alive = functools.partial(worker_is_live, client, hostname, queues.split(","))
            wait_until(alive, what=f"worker {hostname}", watch=[proc])
        return proc

    def gateway(
        self, redis_url: str, *, port: int | None = None, name: str = "gateway", **settings: Any
    ) -> tuple[Proc, str]:
        """The real gateway (``python -m factorial_ws serve``); returns it and its ws:// URL.
        At the end it is killed, as workers are: a test about its shutdown stops it itself."""
        port = port or free_port()
        command = gateway_command("--host", "127.0.0.1", "--port", str(port))
        env = process_env(redis_url, **settings)
        proc = self.process(name, command, env, stop_signal=signal.SIGKILL, together=True)
        wait_until(lambda: port_open(port), what=f"gateway on port {port}", watch=[proc])
        return proc, f"ws://127.0.0.1:{port}/"

    def in_process_gateway(self, redis_url: str, **settings: Any) -> str:
        """The gateway in this process, for a test that only speaks the protocol: no start-up
        of its own (a subprocess spends about 2 s of CPU importing). It runs on a thread and
        event loop of its own, since tests block theirs (``wait_until``, urllib); it is closed
        at the end. Its logs go to the test's logging, its metrics to this process's registry:
        a test that reads either, or signals the gateway, uses ``gateway``."""
        port = free_port()
        env = process_env(redis_url, WS_HOST="127.0.0.1", WS_PORT=port, **settings)
        serving = _GatewayThread(Config.from_env(env))
        self.callback(serving.stop)
        serving.start()
        return f"ws://127.0.0.1:{port}/"

    def up(self, env: dict[str, str], *, name: str = "up") -> Proc:
        """`factorial-ws up` (the whole system under one process) run with ``env``; returns once
        it prints its URL, from when that URL works. At the end it is killed, and its children
        with it (their parent-death signal): its warm stop is its own tests' to time."""
        proc = self.process(name, [FACTORIAL_WS, "up"], env, stop_signal=signal.SIGKILL)
        wait_until(lambda: "factorial-ws is up: " in proc.log(), what=name, watch=[proc])
        return proc

    def system(self, *, worker_concurrency: int = 2, **settings: Any) -> System:
        """Redis, a worker for both queues (the seed's app), and a gateway, started as `up` starts
        them (``local_system.py``); at the end they are killed, as ``worker()`` says."""
        server = self.redis()
        env = process_env(server.url, **settings)
        config = Config.from_env(env).replace(ws_host="127.0.0.1", ws_port=free_port())
        worker = Worker(f"w{free_port()}", "soft,hard", worker_concurrency, app="celeryqueue")
        local = LocalSystem(config, workers=[worker], env=env, log_dir=self.log_dir, cwd=REPO).start()
        system = System(server, self.log_dir, url=local.url)
        for child in local.children:
            assert child.process is not None and child.log_path is not None
            proc = Proc(child.log_path.stem, child.process, child.log_path)
            self._stops.append(_Stop(process=proc.process, stop_signal=signal.SIGKILL, together=True))
            if child in local.workers:
                system.workers.append(proc)
            else:
                system.gateway = system.gateway or proc
        local.wait_ready(START_TIMEOUT_S)
        return system


class _GatewayThread:
    """``async with Gateway(config)`` on a thread with its own event loop (uvloop, as a gateway
    process runs), until ``stop()``."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._listening = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="gateway", daemon=True)

    def start(self) -> None:
        """Return once the gateway listens; raise what made its start-up fail."""
        self._thread.start()
        if not self._listening.wait(START_TIMEOUT_S):
            raise TimeoutError("timed out waiting for the in-process gateway")
        if self._failure is not None:
            raise self._failure

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(STOP_TIMEOUT_S)
        assert not self._thread.is_alive(), "the in-process gateway did not stop"
        if self._failure is not None:
            raise self._failure

    def _run(self) -> None:
        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(self._serve())
        except BaseException as exc:
            self._failure = exc
        finally:
            self._listening.set()

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with Gateway(self._config):
            self._listening.set()
            await self._stop.wait()


def printed_by_fresh_interpreters(*codes: str) -> list[list[str]]:
    """The words each of ``codes`` prints when run by a new interpreter (a test of what an import
    loads); the interpreters run side by side, as their imports take a second or two each."""
    runs = [subprocess.Popen([PYTHON, "-c", code], stdout=subprocess.PIPE, text=True) for code in codes]
    printed = [run.communicate(timeout=START_TIMEOUT_S)[0].split() for run in runs]
    assert [run.returncode for run in runs] == [0] * len(runs), printed
    return printed


def worker_hostname(name: str) -> str:
    """The Celery hostname of the worker ``Launcher.worker(name=name)`` starts."""
    return f"{name}@test"


def redis_client(redis_url: str, **settings: Any) -> redis.Redis:
    """A client of the Redis (or of the Sentinel group's master) that processes started with
    these settings use."""
    env = {"REDIS_URL": redis_url, **{name: str(value) for name, value in settings.items()}}
    return sync_client(Config.from_env(env))


def group_settings(group: RedisGroup) -> dict[str, str]:
    """The settings (besides REDIS_URL) of a process that uses a Sentinel group."""
    settings = {"REDIS_SENTINEL_MASTER": group.master_name}
    if group.sentinel_password:
        settings["REDIS_SENTINEL_PASSWORD"] = group.sentinel_password
    return settings
