"""factorial-ws: a WebSocket gateway to Celery workers that compute exact factorials."""

__version__ = "0.1.0"
