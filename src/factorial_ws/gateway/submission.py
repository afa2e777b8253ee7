"""The submission script, one atomic step in Redis per request (``submit.lua``: what it does
and why is in its comments), the rules it follows and its answers; ``producer.py`` runs it."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Final, Literal

from ..config import Config
from ..constants import (
    CLIENT_BUSY,
    CLIENT_STORED_TOO_MUCH,
    HARD_QUEUE,
    HARD_QUEUE_FULL,
    SOFT_QUEUE,
    STORAGE_NEARLY_FULL,
)

# Package data (pyproject.toml), read once at import.
SUBMIT_SCRIPT: Final = resources.files("factorial_ws").joinpath("gateway", "submit.lua").read_text("utf-8")


@dataclass(frozen=True)
class Rules:
    """How ``submit`` turns a request into a task (the defaults: a new task, always)."""

    reuse: bool = False  # RESULT_REUSE
    task_expires_s: float | None = None  # TASK_EXPIRES: Celery's expires on the message
    pending_at_most_s: float = 0.0  # after this, a task without a result never gets one
    hard_queue_max_digits: int = 0  # HARD_QUEUE_MAX_DIGITS (0: none)
    hard_queue_digits_per_client: int = 0  # HARD_QUEUE_DIGITS_PER_CLIENT (0: none)
    stored_bytes_per_client: int = 0  # STORED_BYTES_PER_CLIENT (0: none)
    # The budgets of every other queue (a catalog task's), in its entries' cost (0: none).
    queue_max_cost: int = 0  # QUEUE_MAX_COST
    queue_cost_per_client: int = 0  # QUEUE_COST_PER_CLIENT

    @classmethod
    def from_config(cls, config: Config) -> Rules:
        # A task starts before it expires, then runs at most MAX_TASK_ATTEMPTS times; one older
        # than that without a result was lost: its number is computed again.
        pending_at_most_s = config.task_expires_s + config.max_task_attempts * config.hard_task_timeout_s
        return cls(
            config.result_reuse,
            config.task_expires_s,
            pending_at_most_s,
            config.hard_queue_max_digits,
            config.hard_queue_digits_per_client,
            config.stored_bytes_per_client,
            config.queue_max_cost,
            config.queue_cost_per_client,
        )


@dataclass(frozen=True)
class Accepted:
    """The submission script took the request (not to be confused with ``admission``, the
    gateway's gate before Redis): the task that answers it, a new one (``created``), or the
    computation of the same number already ``pending`` or ``done``."""

    task_id: str
    state: Literal["created", "pending", "done"]
    ahead: int | None = None  # of a task created for a request with progress

    @property
    def reused(self) -> bool:
        return self.state != "created"


@dataclass(frozen=True)
class Refused:
    """The submission script turned the request away (Redis' memory is past its high water,
    the hard queue's budget or the client address's is spent, or the address stored too much):
    the message the client gets."""

    message: str


REFUSALS: Final = {
    "queue_busy": Refused(HARD_QUEUE_FULL),
    "client_busy": Refused(CLIENT_BUSY),
    "stored_too_much": Refused(CLIENT_STORED_TOO_MUCH),
    "storage_nearly_full": Refused(STORAGE_NEARLY_FULL),
}


def budgets(rules: Rules, queue: str) -> tuple[int, int]:
    """The queue's budget and an address's share of it, in cost: the hard queue's in digits,
    none for the soft queue (its tasks are cheap), the catalog's in its entries' costs."""
    if queue == HARD_QUEUE:
        return rules.hard_queue_max_digits, rules.hard_queue_digits_per_client
    if queue == SOFT_QUEUE:
        return 0, 0
    return rules.queue_max_cost, rules.queue_cost_per_client
