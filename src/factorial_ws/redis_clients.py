"""Every Redis client of the project is built here, from ``REDIS_URL`` and the Sentinel settings.

A ``redis://``, ``rediss://`` or ``unix://`` URL names one server. A ``sentinel://`` URL, in
Celery's form ``sentinel://host:26379;sentinel://host2:26379/0``, names the Sentinels that watch
the master called ``REDIS_SENTINEL_MASTER``. A client built from it asks them where the master is
before each new connection, so after a failover it reaches the promoted replica by itself: the
gateway's command pool and pub/sub connection, the workers' broker and result backend (through
kombu's and Celery's own Sentinel support, configured here), the worker heartbeat and the
attempt counter all follow the master the same way.

The master's password and database are those of the first node of the URL
(``sentinel://:password@host:26379/0``), as Celery and kombu read them; the Sentinels' own
password, when they have one, is ``REDIS_SENTINEL_PASSWORD``.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, parse_qsl, unquote, urlencode, urlsplit

import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel as aiosentinel
import redis.sentinel
from kombu.transport import TRANSPORT_ALIASES, virtual
from kombu.transport import redis as kombu_redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .config import Config

logger = logging.getLogger(__name__)

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


def _sentinel_options(config: Config) -> dict[str, Any]:
    """How to talk to the Sentinels themselves: quickly, once, with their password if any."""
    options: dict[str, Any] = {
        "socket_connect_timeout": _SENTINEL_TIMEOUT_S,
        "socket_timeout": _SENTINEL_TIMEOUT_S,
        "retry": Retry(NoBackoff(), 0),
    }
    if config.redis_sentinel_password:
        options["password"] = config.redis_sentinel_password
    return options


def _master_name(config: Config) -> str:
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
    client: aioredis.Redis = _async_sentinel(config).master_for(_master_name(config), **options)
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
        _master_name(config),
        connection_pool_class=_BlockingSentinelPool,
        max_connections=max_connections,
        timeout=timeout_s,
        **options,
    )
    return client


def _async_sentinel(config: Config) -> aiosentinel.Sentinel:
    return aiosentinel.Sentinel(
        sentinel_nodes(config.redis_url),
        sentinel_kwargs=_sentinel_options(config),
        **_master_options(config.redis_url),
    )


# --- threads: workers and tools ----------------------------------------------------------------


def sync_client(config: Config, **options: Any) -> redis.Redis:
    """A blocking client of the master; ``options`` are redis-py's."""
    if not is_sentinel(config.redis_url):
        return redis.Redis.from_url(config.redis_url, **options)
    sentinel = redis.sentinel.Sentinel(
        sentinel_nodes(config.redis_url),
        sentinel_kwargs=_sentinel_options(config),
        **_master_options(config.redis_url),
    )
    client: redis.Redis = sentinel.master_for(_master_name(config), **options)
    return client


# --- Celery: the workers' broker and result backend --------------------------------------------


class _QoS(kombu_redis.QoS):
    """kombu's record of the messages a worker holds, kept working when Redis is full.

    Redis refuses every command queued in a MULTI once it is over ``maxmemory`` (noeviction),
    even one that frees memory: kombu's acknowledgement (ZREM and HDEL in a transaction) then
    raised OutOfMemoryError in the worker's main process, which Celery calls unrecoverable, and
    the worker exited. Both commands are allowed on their own, so they go in a plain pipeline
    (kombu's restore reads the hash and tolerates an entry missing from either).

    A message BRPOP has already taken cannot be recorded as unacknowledged then (ZADD and HSET
    are refused): it is delivered all the same, held in this worker's memory only (lost if the
    worker dies before finishing it) rather than lost at once with the worker.
    """

    @contextmanager
    def pipe_or_acquire(self, pipe: Any = None, client: Any = None) -> Iterator[Any]:
        if pipe is not None:
            yield pipe
        else:
            channel: Any = self.channel
            with channel.conn_or_acquire(client) as acquired:
                yield acquired.pipeline(transaction=False)

    def append(self, message: Any, delivery_tag: Any) -> None:
        try:
            super().append(message, delivery_tag)
        except redis.OutOfMemoryError:
            logger.warning(
                "Redis is full: task message %s is held in memory only, not in the unacked hash",
                delivery_tag,
            )
            virtual.QoS.append(self, message, delivery_tag)


class _ChannelMixin:
    """kombu's Redis channels with two failures turned into what they are.

    When a worker's broker connection drops while it holds an unacknowledged task, Celery
    closes the connection twice (``collect()``, then ``close()``). If the first close fails
    on the dead socket before it reaches the restore of unacknowledged tasks, the second one
    attempts that restore after kombu has cleared the connection's parameters, and the
    AttributeError it then raises ('NoneType' object has no attribute 'hostname') is not a
    connection error: Celery calls it unrecoverable and the worker exits (seen in about one
    Sentinel failover in two, and in 1 of 11 restarts of a plain Redis, kombu 5.7). Raised as
    a connection error, it is ignored like any failed restore: the task stays in Redis'
    ``unacked`` hash and is redelivered after ``VISIBILITY_TIMEOUT``.

    And a full Redis (``_QoS``) no longer stops the acknowledgements.
    """

    QoS: Any = _QoS
    connection: Any

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise redis.ConnectionError("the broker connection is closed")
        params: dict[str, Any] = super()._connparams(asynchronous)  # type: ignore[misc]
        return params


class _Channel(_ChannelMixin, kombu_redis.Channel):
    pass


class _SentinelChannel(_ChannelMixin, kombu_redis.SentinelChannel):
    pass


class Transport(kombu_redis.Transport):
    Channel = _Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = _SentinelChannel


# The transports behind redis://, rediss://, redis+socket:// and sentinel:// URLs in every
# process that builds our Celery app. The URL's scheme picks the transport, and also when kombu
# switches to the next Sentinel of the URL, so the alias is what must change (a
# `broker_transport` setting is lost at the first switch).
for _scheme in ("redis", "rediss"):
    TRANSPORT_ALIASES[_scheme] = f"{__name__}:Transport"
TRANSPORT_ALIASES[SENTINEL_SCHEME] = f"{__name__}:SentinelTransport"


def celery_redis_settings(config: Config) -> dict[str, Any]:
    """Celery settings that point the broker and the result backend at Redis, or at the master
    the Sentinels name. kombu and Celery's result backend take the master's name and the
    Sentinels' connection options from their transport options."""
    url = celery_redis_url(config.redis_url)
    settings: dict[str, Any] = {"broker_url": url, "result_backend": url}
    if is_sentinel(config.redis_url):
        sentinel = {"master_name": _master_name(config), "sentinel_kwargs": _sentinel_options(config)}
        settings["broker_transport_options"] = sentinel
        settings["result_backend_transport_options"] = dict(sentinel)
    return settings | redis_tls_settings(config.redis_url)


def celery_redis_url(redis_url: str) -> str:
    """The Redis URL as kombu and Celery's result backend spell it. They read ``redis://``,
    ``rediss://`` and ``sentinel://`` as redis-py does, but a Unix socket is
    ``redis+socket:///path?virtual_host=N`` to them and ``unix:///path?db=N`` to redis-py (the
    gateway, the workers' own clients): the one REDIS_URL is written redis-py's way and
    translated here."""
    parts = urlsplit(redis_url)
    if parts.scheme != "unix":
        return redis_url
    query = [("virtual_host" if key == "db" else key, value) for key, value in parse_qsl(parts.query)]
    # Written out: urlunsplit would drop the "//" of an empty netloc (redis+socket:/path).
    return f"redis+socket://{parts.netloc}{parts.path}" + (f"?{urlencode(query)}" if query else "")


def redis_tls_settings(redis_url: str) -> dict[str, Any]:
    """A ``rediss://`` URL without TLS options of its own verifies the server's certificate
    against the system's CAs, in kombu and Celery's result backend as in redis-py (left alone,
    kombu would not verify at all and the result backend would refuse to start). Options in
    the URL (``?ssl_cert_reqs=required&ssl_ca_certs=/path/ca.pem``) are read by all three."""
    parts = urlsplit(redis_url)
    if parts.scheme != "rediss" or "ssl_cert_reqs" in parse_qs(parts.query):
        return {}
    verify = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    return {"broker_use_ssl": verify, "redis_backend_use_ssl": verify}
