"""Logging set-up: one line per event, as text or JSON."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

EVENT_FIELDS = ("event", "task_id", "task", "number", "queue", "duration_ms", "peer", "suppressed", "detail")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in EVENT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line)


# Whether the per-request lines (connect, request, result, disconnect) are written: ACCESS_LOG.
_access = False


def configure(level: str, fmt: str, *, access: bool = False) -> None:
    global _access
    _access = access
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # websockets logs every refused handshake and closed connection; our own events say more.
    logging.getLogger("websockets").setLevel(max(logging.WARNING, root.level))


def event(logger: logging.Logger, name: str, **fields: Any) -> None:
    """Log one event; the fields go into the JSON line and into the text message."""
    if not logger.isEnabledFor(logging.INFO):
        return
    text = " ".join(f"{key}={value}" for key, value in fields.items() if value is not None)
    logger.info("%s %s", name, text, extra={"event": name, **fields})


def access(logger: logging.Logger, name: str, **fields: Any) -> None:
    """Log one event of the access log: every request's lines, written only with ACCESS_LOG=1
    (at thousands of requests a second they cost the gateway more than the requests do).
    Errors, refusals and faults are ``event``s: logged whatever ACCESS_LOG says."""
    if _access:
        event(logger, name, **fields)
