"""The seed's client: `python websocket_client_send.py [NUMBER]` sends one job (5 by default)
and prints the replies: the ack with the task id, then the result."""

import sys

from factorial_ws.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["client", *(sys.argv[1:] or ["5"])]))
