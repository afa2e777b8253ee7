"""The catalog of exposed tasks: which Celery tasks clients may call, and how (issue 19)."""

from .entries import (
    DEFAULT_MAX_RESULT_BYTES,
    PROTOCOL_FIELDS,
    RESERVED_NAMES,
    Catalog,
    CatalogError,
    Entry,
    InvalidParams,
)
from .factorial import FACTORIAL, add_factorial, factorial_catalog
from .loading import import_catalog, load_catalog

__all__ = [
    "DEFAULT_MAX_RESULT_BYTES",
    "FACTORIAL",
    "PROTOCOL_FIELDS",
    "RESERVED_NAMES",
    "Catalog",
    "CatalogError",
    "Entry",
    "InvalidParams",
    "add_factorial",
    "factorial_catalog",
    "import_catalog",
    "load_catalog",
]
