"""The Celery app of a worker process, built from the environment:
``celery -A factorial_ws.worker worker`` (for a package, Celery's ``find_app`` loads its
``celery`` module). Importing it also installs the worker-only hooks."""

import sys

from ..config import Config, ConfigError
from . import hooks
from .app import create_app

try:
    config = Config.from_env()
except ConfigError as exc:
    print(f"factorial-ws: {exc}", file=sys.stderr)
    raise SystemExit(1) from None

app = create_app(config)
hooks.install(app, config)

__all__ = ["app", "config"]
