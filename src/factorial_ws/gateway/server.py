"""The gateway: a WebSocket server wired to Redis (results) and Celery's queues (tasks).

``Gateway`` owns start-up, the serve loop and shutdown of one process; running several of them
on one port is the supervisor's job (``supervisor.gateways``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
from types import TracebackType

import redis.asyncio as aioredis
import uvloop
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.typing import Origin

from .. import redis_clients
from ..catalog import Catalog, load_catalog
from ..config import Config
from ..worker.app import create_app
from .admission import Admission
from .big_results import ResultCache
from .cancel import Canceller
from .deadlines import Deadlines
from .memory import MemoryGauge
from .outbox import OutputBudget
from .producer import Producer, Rules
from .results import ResultHub
from .routes import Routes, share_state_forever
from .session import Services, Session
from .tuning import raise_open_files_limit, return_large_allocations, tuned_collector

logger = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 5.0
_CLOSE_TIMEOUT_S = 2.0
_REDIS_CONNECT_TIMEOUT_S = 2.0
_REDIS_COMMAND_TIMEOUT_S = 5.0
_REDIS_POOL_SIZE = 64
# The longest a request waits for its turn (admission.py) before it is refused as "Server busy".
ADMISSION_WAIT_S = 60.0
# Requests talking to Redis at once. Their commands go in batches (batching.py), so this bounds
# the work in progress, not the connections used.
ADMISSION_SLOTS = 1024
# After Redis restarts, every pooled connection is one the server closed, and redis-py 8 does not
# notice at checkout (it skips its check when RESP3 maintenance notifications are on, the
# default): the first command on each fails with "Connection closed by server". One immediate
# retry, on a new connection, makes it succeed. Only connection errors are retried, so a Redis
# that is down still gets "Service unavailable" at once, and one that hangs is not waited for
# twice. Every command of the pool may run twice: reads, and the task push, which is written to
# be idempotent (submit.lua).
_STALE_CONNECTION_RETRY = Retry(NoBackoff(), 1, supported_errors=(aioredis.ConnectionError,))


class Gateway:
    """One gateway process. ``async with Gateway(config):`` serves until the block ends."""

    def __init__(self, config: Config, *, reuse_port: bool = False) -> None:
        self.config = config
        self.reuse_port = reuse_port or config.gateway_processes > 1
        self._client: aioredis.Redis | None = None
        self._pubsub_client: aioredis.Redis | None = None
        self._hub: ResultHub | None = None
        self._canceller: Canceller | None = None
        self._sharing: asyncio.Task[None] | None = None  # this process's share of health, metrics
        self._server: Server | None = None
        self._sessions = 0  # connections past their handshake, for the WS_MAX_CONNECTIONS cap
        self._warm_up: asyncio.Task[None] | None = None
        self._memory_polls: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        config = self.config
        raise_open_files_limit()
        return_large_allocations()
        # A burst of requests waits for a pooled connection rather than failing: redis-py's
        # default pool refuses its 101st concurrent command ("Too many connections").
        self._client = redis_clients.blocking_async_client(
            config,
            max_connections=_REDIS_POOL_SIZE,
            timeout_s=_REDIS_COMMAND_TIMEOUT_S,
            socket_connect_timeout=_REDIS_CONNECT_TIMEOUT_S,
            socket_timeout=_REDIS_COMMAND_TIMEOUT_S,
            retry=_STALE_CONNECTION_RETRY,
        )
        self._pubsub_client = redis_clients.async_client(
            config,
            socket_connect_timeout=_REDIS_CONNECT_TIMEOUT_S,
            # TCP keepalive; a unix:// connection refuses the option.
            **({} if config.redis_url.startswith("unix:") else {"socket_keepalive": True}),
            retry=Retry(NoBackoff(), 0),
        )
        catalog = load_catalog(config)
        hub = self._hub = ResultHub(
            self._client, self._pubsub_client, catalog=catalog, task_error_messages=config.task_error_messages
        )
        await hub.start()
        if not await hub.wait_connected(_REDIS_CONNECT_TIMEOUT_S):
            logger.warning("Redis at %s is not reachable yet; serving anyway", _safe(config.redis_url))
        memory = MemoryGauge(self._client, config.redis_memory_high_water)
        self._memory_polls = asyncio.create_task(memory.run(), name="memory-gauge")
        services = shared_services(config, self._client, hub, memory, catalog)
        self._canceller = services.canceller
        self._warm_up = asyncio.create_task(services.canceller.warm_up())

        async def handler(connection: ServerConnection) -> None:
            self._sessions += 1
            try:
                await Session(connection, services).run()
            finally:
                self._sessions -= 1

        routes = Routes(config, self._client, hub, memory, self._open_connections, catalog)
        self._sharing = asyncio.create_task(share_state_forever(hub), name="share-state")
        self._server = await serve(
            handler,
            config.ws_host,
            config.ws_port,
            process_request=routes,
            origins=_origins(config),
            max_size=config.max_message_bytes,
            ping_interval=config.ping_interval_s,
            ping_timeout=config.ping_timeout_s,
            # A peer that does not answer our close frame is dropped after this, so a dead peer
            # neither holds a connection slot nor delays shutdown for websockets' default 10 s.
            close_timeout=_CLOSE_TIMEOUT_S,
            # Results can be megabytes of digits; deflating them costs more CPU than it saves.
            compression=None,
            ssl=_tls_context(config),
            reuse_port=self.reuse_port,
        )
        logger.info("gateway listening on %s (pid %d)", ", ".join(self._bound_urls()), os.getpid())

    def _bound_urls(self) -> list[str]:
        """What the server's sockets are really bound to (0.0.0.0 is not localhost)."""
        assert self._server is not None
        urls = []
        for sock in self._server.sockets:
            host, port = sock.getsockname()[:2]
            host = f"[{host}]" if ":" in host else host
            urls.append(f"{self.config.ws_scheme}://{host}:{port}/")
        return urls

    def _open_connections(self) -> int:
        # A counter, not len(server.connections): that property builds a set of every
        # connection, which made each handshake O(n) and 10000 connections quadratic.
        return self._sessions

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop accepting, close connections with 1001, wait a bounded time, then let go."""
        if self._server is not None:
            self._server.close(close_connections=True)
            try:
                await asyncio.wait_for(self._server.wait_closed(), SHUTDOWN_GRACE_S)
            except TimeoutError:
                logger.warning("connections still open after %.0f s; dropping them", SHUTDOWN_GRACE_S)
        for background in (self._sharing, self._memory_polls):
            if background is not None:
                background.cancel()
        if self._hub is not None:
            await self._hub.close()
        if self._canceller is not None:
            self._canceller.close()
        for client in (self._client, self._pubsub_client):
            if client is not None:
                await client.aclose()

    async def serve_until_signalled(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        async with self:
            await stop.wait()
            logger.info("shutting down")


def shared_services(
    config: Config, client: aioredis.Redis, hub: ResultHub, memory: MemoryGauge, catalog: Catalog
) -> Services:
    """What every session of one gateway process shares, on its pooled Redis ``client``."""
    app = create_app(config)
    producer = Producer(
        app,
        client,
        config.result_expires_s,
        min_replicas_ack=config.redis_min_replicas_ack,
        rules=Rules.from_config(config),
        memory=memory,
    )
    deadlines = Deadlines()
    return Services(
        config,
        producer,
        hub,
        Admission(ADMISSION_SLOTS, ADMISSION_WAIT_S, deadlines),
        ResultCache(client),
        Canceller(app, client, config.task_expires_s),
        deadlines,
        OutputBudget(config.max_output_bytes_per_process),
        catalog,
    )


def run_gateway(config: Config, *, reuse_port: bool = False) -> None:
    """Serve in this process until SIGINT or SIGTERM, on uvloop (its sockets, timers and task
    switches cost the gateway far less CPU than asyncio's own loop; docs/benchmarks.md)."""
    with tuned_collector(), asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(Gateway(config, reuse_port=reuse_port).serve_until_signalled())


def _origins(config: Config) -> list[Origin | None] | None:
    if not config.allowed_origins:
        return None
    # A request without an Origin header is not from a browser page, so not a cross-site risk.
    return [*(Origin(origin) for origin in config.allowed_origins), None]


def _tls_context(config: Config) -> ssl.SSLContext | None:
    if config.tls_cert is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(config.tls_cert, config.tls_key)
    return context


_safe = redis_clients.safe_url  # a Redis URL without its passwords, for logs
