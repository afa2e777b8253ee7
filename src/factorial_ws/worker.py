"""The Celery app of a worker process, built from the environment:
``celery -A factorial_ws.worker worker``. Importing it also installs the worker-only hooks."""

import sys

from . import worker_hooks
from .celeryapp import create_app
from .config import Config, ConfigError

try:
    config = Config.from_env()
except ConfigError as exc:
    print(f"factorial-ws: {exc}", file=sys.stderr)
    raise SystemExit(1) from None

app = create_app(config)
worker_hooks.install(app, config)

__all__ = ["app", "config"]
