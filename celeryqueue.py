"""The seed's Celery entry point: `celery -A celeryqueue worker ... -Q soft,hard`.

Queues, routing and time limits live in factorial_ws.celeryapp and factorial_ws.tasks; settings
come from the environment.
"""

from factorial_ws.worker import app

__all__ = ["app"]
