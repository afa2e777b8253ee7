"""The Celery side: ``app.py`` builds the Celery app every process shares (gateway, workers,
bench) on ``transport.py``'s broker and result backend, ``tasks.py`` holds the factorial tasks,
``result_backend.py`` Celery's Redis backend with our note per result, ``stored_meta.py`` its
reader (pure, the gateway's); ``celery.py`` is a worker process's app (``celery -A
factorial_ws.worker``), ``hooks.py`` the hooks only workers load, and ``processes.py`` a worker's
command line and heartbeat as the rest of the system reads them.

Importing this package does nothing: the gateway imports ``app`` without loading worker hooks."""
