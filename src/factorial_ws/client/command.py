"""The ``factorial-ws client`` command: send requests through ``Client``, print every reply as
one JSON line, exactly as the gateway sent it; a connection that cannot be opened is one line
on stderr naming the cause."""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TextIO

from .api import Client
from .errors import ConnectionFailed, FactorialWSError, HandshakeRefused

# What to do about each refused handshake, after the gateway's own reason.
_HINTS = {
    401: "give the token with --token or WS_TOKEN",
    403: "this Origin is not in the gateway's WS_ALLOWED_ORIGINS",
    503: "the gateway holds WS_MAX_CONNECTIONS connections; try again later",
}


@dataclass(frozen=True)
class ClientRun:
    url: str
    numbers: tuple[int, ...] = ()
    task_ids: tuple[str, ...] = ()
    token: str | None = None
    ca_file: str | None = None


def tls_context(ca_file: str | None) -> ssl.SSLContext | None:
    """A context trusting ``ca_file`` (a private certificate authority), else the default."""
    return None if ca_file is None else ssl.create_default_context(cafile=ca_file)


def connection_problem(exc: ConnectionFailed) -> str:
    """The one line the command prints when it cannot connect."""
    if isinstance(exc, HandshakeRefused) and exc.status_code in _HINTS:
        return f"{exc.message} ({_HINTS[exc.status_code]})"
    if isinstance(exc.__cause__, ssl.SSLCertVerificationError):
        return f"{exc.message}; give its CA certificate with --ca-file"
    return exc.message


async def run_client(run: ClientRun, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Send every request at once, print every reply as it comes; exit code 1 if a request
    ended in an error or the connection could not be opened."""

    def show(frame: str) -> None:
        print(frame, file=out, flush=True)

    try:
        context = tls_context(run.ca_file)
    except OSError as exc:  # no such file, or no certificate in it
        print(f"factorial-ws client: --ca-file {run.ca_file}: {exc.strerror or exc}", file=err)
        return 1
    try:
        async with Client(run.url, token=run.token, ssl=context, on_frame=show) as client:
            requests: list[Awaitable[object]] = [client.factorial(n, digits=True) for n in run.numbers]
            requests += [client.lookup(task_id, digits=True) for task_id in run.task_ids]
            outcomes = await asyncio.gather(*requests, return_exceptions=True)
    except ConnectionFailed as exc:
        print(f"factorial-ws client: {connection_problem(exc)}", file=err)
        return 1
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, FactorialWSError):
            raise outcome
    return 1 if any(isinstance(outcome, FactorialWSError) for outcome in outcomes) else 0
