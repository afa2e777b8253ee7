"""kombu and Celery on Redis: the settings that point a Celery app's broker and result backend
at ``REDIS_URL`` (one server, or the master a Sentinel group names, over TLS when asked), and
kombu's Redis transports with the failures a worker met turned into what they are. The redis-py
clients themselves are built in ``redis_clients.py``."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import redis
from kombu.transport import TRANSPORT_ALIASES, virtual
from kombu.transport import redis as kombu_redis

from ..config import Config
from ..redis_clients import SENTINEL_SCHEME, is_sentinel, master_name, sentinel_options

logger = logging.getLogger(__name__)


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


def register_transports() -> None:
    """Put our transports behind redis://, rediss://, redis+socket:// and sentinel:// URLs in
    this process; every process that builds our Celery app does (``app.py``). The URL's scheme
    picks the transport, and also when kombu switches to the next Sentinel of the URL, so the
    alias is what must change (a `broker_transport` setting is lost at the first switch)."""
    for scheme in ("redis", "rediss"):
        TRANSPORT_ALIASES[scheme] = f"{__name__}:Transport"
    TRANSPORT_ALIASES[SENTINEL_SCHEME] = f"{__name__}:SentinelTransport"


def celery_redis_settings(config: Config) -> dict[str, Any]:
    """Celery settings that point the broker and the result backend at Redis, or at the master
    the Sentinels name. kombu and Celery's result backend take the master's name and the
    Sentinels' connection options from their transport options."""
    url = celery_redis_url(config.redis_url)
    settings: dict[str, Any] = {"broker_url": url, "result_backend": url}
    if is_sentinel(config.redis_url):
        sentinel = {"master_name": master_name(config), "sentinel_kwargs": sentinel_options(config)}
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
