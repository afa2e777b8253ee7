"""Plain HTTP beside the WebSocket endpoint, and the handshake checks, in websockets'
``process_request`` hook: health, metrics, the browser page, auth and the connection cap."""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import math
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis.asyncio as aioredis
from redis.utils import str_if_bytes
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from ..catalog import Catalog, factorial_catalog
from ..config import Config
from ..constants import QUEUES, SUPERVISOR_PROBLEMS_KEY, WORKER_STALE_S, WORKERS_KEY_PREFIX
from . import metrics
from .memory import MemoryGauge
from .results import ResultHub

_PAGE_FILE = "index.html"
_SCRIPT_FILE = "client.js"  # the browser client module, for the page and for users' own pages
WEBSOCKET_PATH = "/"  # the only path that takes a WebSocket handshake (with any query)
_SHARE_INTERVAL_S = 1.0
# /healthz and /metrics are unauthenticated and cost about a millisecond of CPU each to build:
# each is built at most once per this interval and the same bytes answered meanwhile, so a
# flood of GETs costs no more than one build a second.
RESPONSE_CACHE_S = 1.0


class CachedResponse:
    """The last response built by ``build``, reused for ``ttl_s`` (a new one is built by the
    first request after that; requests arriving during the build share it)."""

    def __init__(self, build: Callable[[], Awaitable[Response]], ttl_s: float) -> None:
        self._build = build
        self._ttl_s = ttl_s
        self._built: asyncio.Future[Response] | None = None
        self._built_at = -math.inf

    async def get(self) -> Response:
        now = time.monotonic()
        if self._built is None or now - self._built_at >= self._ttl_s:
            self._built_at = now
            self._built = asyncio.ensure_future(self._build())
        response = await asyncio.shield(self._built)
        # A fresh copy of the headers: websockets may add its own to the response it sends.
        return dataclasses.replace(response, headers=Headers(response.headers))


def response(status: HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("Connection", "close"),
        ]
    )
    return Response(status.value, status.phrase, headers, body)


def text_response(status: HTTPStatus, text: str) -> Response:
    return response(status, (text + "\n").encode(), "text/plain; charset=utf-8")


def is_websocket_upgrade(request: Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def token_of(request: Request) -> str | None:
    """The bearer token from the Authorization header, or the `token` query parameter (a
    browser's WebSocket API cannot set headers)."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    values = parse_qs(urlsplit(request.path).query).get("token")
    return values[0] if values else None


def token_matches(expected: str | None, given: str | None) -> bool:
    if expected is None:
        return True
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


class Routes:
    """The ``process_request`` hook of one gateway process."""

    def __init__(
        self,
        config: Config,
        client: aioredis.Redis,
        hub: ResultHub,
        memory: MemoryGauge,
        open_connections: Callable[[], int],
        catalog: Catalog | None = None,
    ) -> None:
        self._config = config
        self._client = client
        self._hub = hub
        self._memory = memory
        self._health = CachedResponse(self._build_health, RESPONSE_CACHE_S)
        self._metrics = CachedResponse(self._build_metrics, RESPONSE_CACHE_S)
        self._open_connections = open_connections
        self._page = _load_page()
        self._script = _load_page(_SCRIPT_FILE)
        # The catalog does not change while the gateway runs: its description is made once.
        catalog = catalog or factorial_catalog(config)
        self._tasks = json.dumps(catalog.describe(), indent=2).encode()
        # The package's workers beat on factorial's queues; stock workers of catalog tasks do not.
        self._watched_queues = QUEUES if any(entry.builtin for entry in catalog) else ()

    async def __call__(self, connection: ServerConnection, request: Request) -> Response | None:
        if is_websocket_upgrade(request):
            return self._check_handshake(request)
        path = urlsplit(request.path).path
        if path == "/healthz":
            return await self._health.get()
        if path == "/metrics":
            return await self._metrics.get()
        if path == "/tasks":
            tasks = response(HTTPStatus.OK, self._tasks, "application/json")
            tasks.headers["Access-Control-Allow-Origin"] = "*"  # pages of other origins build forms
            return tasks
        if path in ("/", "/index.html") and self._page is not None:
            return response(HTTPStatus.OK, self._page, "text/html; charset=utf-8")
        if path == "/client.js" and self._script is not None:
            script = response(HTTPStatus.OK, self._script, "text/javascript; charset=utf-8")
            script.headers["Access-Control-Allow-Origin"] = "*"  # a module other origins import
            return script
        return text_response(HTTPStatus.NOT_FOUND, "Not found")

    def _check_handshake(self, request: Request) -> Response | None:
        if urlsplit(request.path).path != WEBSOCKET_PATH:
            return text_response(HTTPStatus.NOT_FOUND, "Not found")
        if self._open_connections() >= self._config.max_connections:
            return text_response(HTTPStatus.SERVICE_UNAVAILABLE, "Too many connections")
        if not token_matches(self._config.token, token_of(request)):
            return text_response(HTTPStatus.UNAUTHORIZED, "Missing or wrong token")
        return None  # the Origin allow-list is websockets' own `origins` check

    async def _build_metrics(self) -> Response:
        share_state(self._hub)
        return response(HTTPStatus.OK, metrics.render(), metrics.CONTENT_TYPE)

    async def _build_health(self) -> Response:
        report = await health_report(self._client, self._hub, self._memory, self._watched_queues)
        status = HTTPStatus.OK if not report["problems"] else HTTPStatus.SERVICE_UNAVAILABLE
        body = json.dumps(report, indent=2).encode()
        return response(status, body, "application/json")


def share_state(hub: ResultHub) -> None:
    """Put this process's share of the gateway's health and metrics where any process of the
    gateway reads them (see metrics)."""
    metrics.result_subscriptions_up.set(1 if hub.connected else 0)
    metrics.tasks_waiting.set(hub.waiting)


async def share_state_forever(hub: ResultHub) -> None:
    """Keep this process's share current for the other processes of the gateway, which may
    answer the next scrape or health check."""
    metrics.gateway_processes.set(1)
    while True:
        share_state(hub)
        await asyncio.sleep(_SHARE_INTERVAL_S)


async def health_report(
    client: aioredis.Redis, hub: ResultHub, memory: MemoryGauge, queues: tuple[str, ...] = QUEUES
) -> dict[str, Any]:
    """Whether this gateway, all its processes, can serve: Redis and how full it is, every
    process's result subscription, a live worker per queue of ``queues`` (factorial's, whose
    workers beat), and the children of `up` that keep failing (``SUPERVISOR_PROBLEMS_KEY``)."""
    share_state(hub)
    processes, subscribed = metrics.gateway_totals()
    processes = max(processes, 1)  # this one, before its first share
    report: dict[str, Any] = {
        "redis": False,
        "result_subscription": subscribed >= processes,
        "gateway_processes": processes,
        "workers": {},
        "queue_depth": {},
        "memory": memory.report(),
        "problems": [],
    }
    try:
        pipe = client.pipeline(transaction=False)
        since = time.time() - WORKER_STALE_S
        for queue in queues:
            pipe.zcount(WORKERS_KEY_PREFIX + queue, since, "+inf")
            pipe.llen(queue)
        pipe.hvals(SUPERVISOR_PROBLEMS_KEY)
        replies = await pipe.execute()
    except (aioredis.RedisError, OSError):
        report["problems"].append("Redis is unreachable")
        return report
    report["redis"] = True
    for index, queue in enumerate(queues):
        report["workers"][queue] = int(replies[2 * index])
        report["queue_depth"][queue] = int(replies[2 * index + 1])
        if not report["workers"][queue]:
            report["problems"].append(f"no worker seen on queue '{queue}'")
    report["problems"] += sorted(str_if_bytes(problem) for problem in replies[2 * len(queues)])
    memory_problem = memory.problem()
    if memory_problem:
        report["problems"].append(memory_problem)
    if subscribed < processes:
        where = f" in {processes - subscribed} of {processes} gateway processes" if processes > 1 else ""
        report["problems"].append("result subscription is down" + where)
    return report


def _load_page(name: str = _PAGE_FILE) -> bytes | None:
    try:
        return resources.files("factorial_ws").joinpath("static", name).read_bytes()
    except FileNotFoundError:
        return None
