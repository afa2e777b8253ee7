"""A Celery app of its own (tasks.py), and the catalog that exposes three of its tasks through
factorial-ws (catalog.py). README: "Expose your own Celery tasks"."""
