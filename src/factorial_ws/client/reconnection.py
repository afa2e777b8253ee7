"""Opening the connection again after a drop: attempts with backoff and jitter until one opens,
the gateway refuses for good, or the patience (``reconnect_timeout_s``) runs out."""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl as ssl_module
import time
from collections.abc import Awaitable, Callable

from websockets.asyncio.client import ClientConnection

from .errors import ConnectionFailed, ConnectionLost, HandshakeRefused
from .wire import backoff_delay_s

logger = logging.getLogger(__name__)


async def reopen(
    open_connection: Callable[[], Awaitable[ClientConnection]],
    url: str,
    reconnect_timeout_s: float | None,
    backoff: tuple[float, float],
) -> ClientConnection:
    """A new connection from ``open_connection``, or ``ConnectionLost``; ``backoff`` is the first
    and the longest wait between attempts, in seconds."""
    started = time.monotonic()
    last = "no attempt made"
    for attempt in itertools.count():
        delay_s = backoff_delay_s(attempt, *backoff)
        if reconnect_timeout_s is not None:
            left_s = reconnect_timeout_s - (time.monotonic() - started)
            if left_s <= 0:
                break
            delay_s = min(delay_s, left_s)
        await asyncio.sleep(delay_s)
        try:
            ws = await open_connection()
        except HandshakeRefused as exc:
            if exc.status_code < 500:  # a token or origin refused now is refused for good
                raise
            last = exc.message
        except ConnectionFailed as exc:
            if isinstance(exc.__cause__, ssl_module.SSLCertVerificationError):
                raise
            last = exc.message
        else:
            logger.info("reconnected to %s after %d attempts", url, attempt + 1)
            return ws
        logger.info("reconnecting to %s: %s", url, last)
    raise ConnectionLost(
        f"{url}: the connection was lost and could not be opened again "
        f"within {reconnect_timeout_s:g} s: {last}"
    )
