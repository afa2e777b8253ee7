"""The seed's timeouts, as configured (SOFT_TASK_TIMEOUT / HARD_TASK_TIMEOUT in the environment)."""

from factorial_ws.worker.celery import app, config

SOFT_TASK_TIMEOUT = config.soft_task_timeout_s
HARD_TASK_TIMEOUT = config.hard_task_timeout_s

__all__ = ["HARD_TASK_TIMEOUT", "SOFT_TASK_TIMEOUT", "app"]
