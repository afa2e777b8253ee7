"""The Celery app built from the environment: ``celery -A factorial_ws.celeryapp worker``."""

import sys

from .config import Config, ConfigError
from .tasks import create_app

try:
    config = Config.from_env()
except ConfigError as exc:
    print(f"factorial-ws: {exc}", file=sys.stderr)
    raise SystemExit(1) from None

app = create_app(config)
