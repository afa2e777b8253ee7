"""How full Redis is, as this gateway process sees it, and the guard built on it: past
REDIS_MEMORY_HIGH_WATER of Redis' ``maxmemory``, new large work is refused ("Server busy:
storage nearly full") while small requests and lookups go on. The producer asks it, and the
submission script applies it after reuse: a large number stored or being computed costs no new
storage, and is still served.

Redis with ``noeviction`` refuses writes once it is full, and a worker that then finishes a task
cannot store its result: refusing new large tasks before that point keeps room for the results
of the tasks already queued. One ``INFO memory`` a second per gateway process: it gives both the
used memory and ``maxmemory``, so no CONFIG command is needed (managed Redis often renames or
forbids it). ``maxmemory 0`` means no limit, and no refusals; so does a Redis that does not
answer INFO (its limit is unknown, and a guess must not refuse work).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import redis.asyncio as aioredis

from ..constants import HARD_QUEUE

logger = logging.getLogger(__name__)

POLL_INTERVAL_S: Final = 1.0


@dataclass(frozen=True)
class MemoryReading:
    used_bytes: int
    max_bytes: int  # Redis' maxmemory; 0: no limit

    @property
    def ratio(self) -> float | None:
        return self.used_bytes / self.max_bytes if self.max_bytes else None


def reading_from_info(info: Mapping[str, Any]) -> MemoryReading | None:
    """The reading in Redis' ``INFO memory`` reply; None if it lacks the fields."""
    try:
        return MemoryReading(int(info["used_memory"]), int(info["maxmemory"]))
    except (KeyError, TypeError, ValueError):
        return None


class MemoryGauge:
    """The latest reading of Redis' memory, refreshed every ``poll_interval_s`` by ``run()``."""

    def __init__(
        self, client: aioredis.Redis, high_water: float, *, poll_interval_s: float = POLL_INTERVAL_S
    ) -> None:
        self._client = client
        self.high_water = high_water
        self._poll_interval_s = poll_interval_s
        self.reading: MemoryReading | None = None
        self._said_unreadable = False

    async def run(self) -> None:
        while True:
            await self.poll()
            await asyncio.sleep(self._poll_interval_s)

    async def poll(self) -> None:
        try:
            info = await self._client.info("memory")
        except aioredis.ResponseError as exc:  # INFO forbidden (ACL) or renamed
            if not self._said_unreadable:
                logger.warning("cannot read Redis' memory use (%s): the storage guard is off", exc)
                self._said_unreadable = True
            self.reading = None
            return
        except (aioredis.RedisError, OSError):
            self.reading = None  # Redis away: requests get "Service unavailable" anyway
            return
        self.reading = reading_from_info(info)

    @property
    def nearly_full(self) -> bool:
        ratio = self.reading.ratio if self.reading else None
        return ratio is not None and ratio >= self.high_water

    def refuses(self, queue: str) -> bool:
        """Whether a new task for ``queue`` is refused now: large ones only, past the high water."""
        return queue == HARD_QUEUE and self.nearly_full

    def report(self) -> dict[str, Any]:
        """The /healthz view: used and maximum bytes, their ratio, and the high-water mark."""
        reading = self.reading
        ratio = reading.ratio if reading else None
        return {
            "used_bytes": reading.used_bytes if reading else None,
            "max_bytes": reading.max_bytes if reading else None,
            "ratio": round(ratio, 3) if ratio is not None else None,
            "high_water": self.high_water,
        }

    def problem(self) -> str | None:
        if not self.nearly_full:
            return None
        assert self.reading is not None and self.reading.ratio is not None
        return (
            f"Redis memory at {self.reading.ratio:.0%} of maxmemory, past the high water "
            f"{self.high_water:.0%}: new large tasks are refused"
        )
