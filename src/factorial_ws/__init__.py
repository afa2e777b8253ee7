"""factorial-ws: a WebSocket gateway to Celery tasks, with exact factorials as its built-in example.

The catalog of exposed tasks (``from factorial_ws import Catalog``) and the client library
(``from factorial_ws import Client``) are importable from here; each is loaded on first use, so
``import factorial_ws`` stays cheap for workers and the gateway.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .catalog import Catalog as Catalog
    from .client import *  # noqa: F403  (the names of client.__all__, loaded by __getattr__)

_CATALOG_EXPORTS = frozenset({"Catalog", "CatalogError"})


def __getattr__(name: str) -> Any:
    # Only class names (the client's exports): `from . import logs` and the like ask this module
    # for its submodules first, and must not load the client for that.
    if name in _CATALOG_EXPORTS:
        return getattr(importlib.import_module(".catalog", __name__), name)
    if name[:1].isupper():
        client = importlib.import_module(".client", __name__)
        if name in client.__all__:
            return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
