"""factorial-ws: a WebSocket gateway to Celery workers that compute exact factorials.

The client library is importable from here (``from factorial_ws import Client``); it is loaded
on first use, so ``import factorial_ws`` stays cheap for workers and the gateway.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .client import *  # noqa: F403  (the names of client.__all__, loaded by __getattr__)


def __getattr__(name: str) -> Any:
    # Only class names (the client's exports): `from . import logs` and the like ask this module
    # for its submodules first, and must not load the client for that.
    if name[:1].isupper():
        client = importlib.import_module(".client", __name__)
        if name in client.__all__:
            return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
