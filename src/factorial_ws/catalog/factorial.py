"""The built-in catalog: ``factorial``, declared through the same API as any user's task.

It is the model example: parameters as a pydantic model, the queue as a function of them
(``soft`` up to 1000, ``hard`` above), and the cost the budgets count (the digits of n!). Two
things set it apart, both for the seed's sake: the gateway parses its requests with the
protocol's own faster parser (``protocol.parse_request``), whose messages the seed's clients
know, and its workers are the package's own (``factorial-ws worker``), which register a task per
queue.
"""

from __future__ import annotations

import functools
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, create_model

from ..config import Config
from ..constants import TASK_NAME_BY_QUEUE
from ..costs import factorial_cost
from ..protocol import queue_for as factorial_queue
from .entries import Catalog

FACTORIAL: Final = "factorial"
_META_OVERHEAD_BYTES: Final = 1024  # Celery's stored meta around the digits


class FactorialParams(BaseModel):
    """``{"type": "factorial", "number": 5}``: n, an integer from 0 to MAX_NUMBER."""

    model_config = ConfigDict(extra="forbid", strict=True)

    number: int = Field(ge=0, description="n, for n!")


@functools.cache
def factorial_params(max_number: int) -> type[FactorialParams]:
    """The model with MAX_NUMBER as its bound (so the JSON Schema shows it)."""
    number = (int, Field(ge=0, le=max_number, description="n, for n!"))
    return create_model("FactorialParams", __base__=FactorialParams, number=number)


def add_factorial(catalog: Catalog, config: Config) -> None:
    """Add ``factorial`` to ``catalog``, with the limits and reuse that ``config`` sets."""
    entry = catalog.add(
        FACTORIAL,
        celery_task=lambda params: TASK_NAME_BY_QUEUE[factorial_queue(params.number)],
        params=factorial_params(config.max_number),
        queue=lambda params: factorial_queue(params.number),
        timeout=config.hard_task_timeout_s,
        share_results=config.result_reuse,
        cost=lambda params: factorial_cost(params.number),
        max_result_bytes=factorial_cost(config.max_number) + _META_OVERHEAD_BYTES,
    )
    catalog._add_builtin(entry)


def factorial_catalog(config: Config) -> Catalog:
    """The catalog the gateway serves when TASKS is unset."""
    catalog = Catalog()
    add_factorial(catalog, config)
    return catalog
