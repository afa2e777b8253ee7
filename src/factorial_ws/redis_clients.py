"""Every Redis client of the project is built here, from ``REDIS_URL`` and the Sentinel settings.

A ``redis://``, ``rediss://`` or ``unix://`` URL names one server. A ``sentinel://`` URL, in
Celery's form ``sentinel://host:26379;sentinel://host2:26379/0``, names the Sentinels that watch
the master called ``REDIS_SENTINEL_MASTER``. A client built from it asks them where the master is
before each new connection, so after a failover it reaches the promoted replica by itself: the
gateway's command pool and pub/sub connection, the workers' broker and result backend (through
kombu's and Celery's own Sentinel support, configured in ``worker/transport.py``), the worker
heartbeat and the attempt counter all follow the master the same way.

The master's password and database are those of the first node of the URL
(``sentinel://:password@host:26379/0``), as Celery and kombu read them; the Sentinels' own
password, when they have one, is ``REDIS_SENTINEL_PASSWORD``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel as aiosentinel
import redis.sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from .config import Config

SENTINEL_SCHEME = "sentinel"
DEFAULT_SENTINEL_PORT = 26379
# Asking the Sentinels where the master is must not wait long on one that is down: the next
# one is asked instead (a Sentinel often dies with the machine of the master it watched).
_SENTINEL_TIMEOUT_S = 1.0


def is_sentinel(url: str) -> bool:
    return urlsplit(url).scheme == SENTINEL_SCHEME


def sentinel_nodes(url: str) -> list[tuple[str, int]]:
    """(host, port) of every Sentinel of a ``sentinel://`` URL."""
    nodes = []
    for node in url.split(";"):
        parts = urlsplit(node)
        assert parts.hostname, node  # the config refuses a node without a host
        nodes.append((parts.hostname, parts.port or DEFAULT_SENTINEL_PORT))
    return nodes


def safe_url(url: str) -> str:
    """A Redis URL without its passwords, for logs (every node of a Sentinel URL)."""
    return ";".join(_without_password(node) for node in url.split(";"))


def _without_password(url: str) -> str:
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


def _master_options(url: str) -> dict[str, Any]:
    """Database and credentials of the master, from the first node of a Sentinel URL."""
    parts = urlsplit(url.split(";", 1)[0])
    options: dict[str, Any] = {"db": int(parts.path.strip("/") or 0)}
    if parts.username:
        options["username"] = unquote(parts.username)
    if parts.password:
        options["password"] = unquote(parts.password)
    return options


def sentinel_options(config: Config) -> dict[str, Any]:
    """How to talk to the Sentinels themselves: quickly, once, with their password if any."""
    options: dict[str, Any] = {
        "socket_connect_timeout": _SENTINEL_TIMEOUT_S,
        "socket_timeout": _SENTINEL_TIMEOUT_S,
        "retry": Retry(NoBackoff(), 0),
    }
    if config.redis_sentinel_password:
        options["password"] = config.redis_sentinel_password
    return options


def master_name(config: Config) -> str:
    assert config.redis_sentinel_master, "the config requires it with a sentinel:// URL"
    return config.redis_sentinel_master


# --- asyncio: the gateway ----------------------------------------------------------------------


class _BlockingSentinelPool(aiosentinel.SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """A Sentinel-managed pool that, like BlockingConnectionPool, makes a burst of commands wait
    for a free connection instead of refusing the one beyond ``max_connections``."""


def async_client(config: Config, **options: Any) -> aioredis.Redis:
    """A client of the master, with its own connection pool; ``options`` are redis-py's."""
    if not is_sentinel(config.redis_url):
        return aioredis.Redis.from_url(config.redis_url, **options)
    client: aioredis.Redis = _async_sentinel(config).master_for(master_name(config), **options)
    return client


def blocking_async_client(
    config: Config, *, max_connections: int, timeout_s: float, **options: Any
) -> aioredis.Redis:
    """A client of the master whose commands wait up to ``timeout_s`` for one of
    ``max_connections`` pooled connections (redis-py's default pool refuses the 101st)."""
    if not is_sentinel(config.redis_url):
        pool = aioredis.BlockingConnectionPool.from_url(
            config.redis_url, max_connections=max_connections, timeout=timeout_s, **options
        )
        return aioredis.Redis.from_pool(pool)
    client: aioredis.Redis = _async_sentinel(config).master_for(
        master_name(config),
        connection_pool_class=_BlockingSentinelPool,
        max_connections=max_connections,
        timeout=timeout_s,
        **options,
    )
    return client


def _async_sentinel(config: Config) -> aiosentinel.Sentinel:
    return aiosentinel.Sentinel(
        sentinel_nodes(config.redis_url),
        sentinel_kwargs=sentinel_options(config),
        **_master_options(config.redis_url),
    )


# --- threads: workers and tools ----------------------------------------------------------------


def sync_client(config: Config, **options: Any) -> redis.Redis:
    """A blocking client of the master; ``options`` are redis-py's."""
    if not is_sentinel(config.redis_url):
        return redis.Redis.from_url(config.redis_url, **options)
    sentinel = redis.sentinel.Sentinel(
        sentinel_nodes(config.redis_url),
        sentinel_kwargs=sentinel_options(config),
        **_master_options(config.redis_url),
    )
    client: redis.Redis = sentinel.master_for(master_name(config), **options)
    return client
