"""Finding the catalog the gateway serves: TASKS names it by an import string, ``module:attribute``
(as uvicorn names an app); unset, the built-in catalog (factorial alone)."""

from __future__ import annotations

import importlib
import os
import sys

from ..config import Config, env_name
from .entries import Catalog, CatalogError
from .factorial import factorial_catalog


def load_catalog(config: Config) -> Catalog:
    """The catalog of ``config.tasks``; raises CatalogError, one line, when it cannot be used."""
    if config.tasks is None:
        return factorial_catalog(config)
    return import_catalog(config.tasks)


def import_catalog(import_string: str) -> Catalog:
    where = f"{env_name('tasks')}={import_string}"
    module_name, _, attribute = import_string.partition(":")
    if not module_name or not attribute:
        raise CatalogError(f"{where}: not an import string 'module:attribute'")
    # As uvicorn does: the current directory is importable, as it is for `celery -A`, though a
    # console script's sys.path starts at its own folder.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except CatalogError as exc:  # an entry of the catalog itself is wrong: its own message
        raise CatalogError(f"{where}: {exc}") from None
    except ImportError as exc:
        raise CatalogError(f"{where}: cannot import {module_name!r}: {exc}") from None
    value: object = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise CatalogError(f"{where}: {module_name!r} has no attribute {attribute!r}")
        value = getattr(value, part)
    if not isinstance(value, Catalog):
        raise CatalogError(f"{where}: is a {type(value).__name__}, not a factorial_ws.Catalog")
    if not len(value):
        raise CatalogError(f"{where}: the catalog is empty")
    return value
