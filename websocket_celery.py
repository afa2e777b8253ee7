"""The seed's gateway entry point: `python websocket_celery.py` serves ws://localhost:25000/."""

from factorial_ws.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["serve"]))
