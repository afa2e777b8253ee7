"""The seed's Celery entry point: `celery -A celeryqueue worker ... -Q soft,hard`.

Queues, routing and time limits live in factorial_ws.worker.app and factorial_ws.worker.tasks; settings
come from the environment.
"""

from factorial_ws.worker.celery import app

__all__ = ["app"]
