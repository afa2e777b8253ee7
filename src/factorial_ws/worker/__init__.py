"""The Celery side: ``app.py`` builds the Celery app every process shares (gateway, workers,
bench), ``tasks.py`` the factorial tasks, ``result_backend.py`` Celery's Redis backend with our
note per result; ``celery.py`` is a worker process's app (``celery -A factorial_ws.worker``) and
``hooks.py`` the hooks only workers load.

Importing this package does nothing: the gateway imports ``app`` without loading worker hooks."""
