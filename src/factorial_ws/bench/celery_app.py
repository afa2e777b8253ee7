"""The Celery app for the bench's worker-settings sweep: the shipped app plus overrides.

``celery -A factorial_ws.bench.celery_app worker`` with ``FACTORIAL_WS_BENCH_CELERY`` holding a JSON
object of Celery settings; the key ``acks_late`` sets the tasks' own option (which wins over
``task_acks_late``). Not for production: the sweep compares settings with it, nothing else.
"""

import json
import os

from ..constants import TASK_NAME_BY_QUEUE
from ..worker.celery import app
from .system import SETTINGS_VARIABLE


def apply_overrides(overrides: dict[str, object]) -> None:
    settings = dict(overrides)
    if "acks_late" in settings:
        acks_late = bool(settings.pop("acks_late"))
        for name in TASK_NAME_BY_QUEUE.values():
            app.tasks[name].acks_late = acks_late
    app.conf.update(settings)


apply_overrides(json.loads(os.environ.get(SETTINGS_VARIABLE) or "{}"))

__all__ = ["app"]
