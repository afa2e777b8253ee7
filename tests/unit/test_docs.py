"""The docs stay true to the code: every setting with its default, every error message, the
Redis settings `up` gives its private Redis."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from factorial_ws import constants
from factorial_ws.config import Config, env_name
from factorial_ws.gateway.session import BINARY_FRAME, INTERNAL_ERROR
from factorial_ws.supervisor.redis_server import private_redis

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _documented_default(value: object) -> str:
    if value is None or value == ():
        return "unset"
    if isinstance(value, bool):
        return f"`{int(value)}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


def test_operations_doc_lists_every_setting_with_its_default() -> None:
    table = (DOCS / "operations.md").read_text()
    defaults = Config()
    for field in dataclasses.fields(Config):
        row = f"| `{env_name(field.name)}` | {_documented_default(getattr(defaults, field.name))} |"
        assert row in table, f"docs/operations.md lacks the row {row}"


def test_protocol_doc_names_every_error_message() -> None:
    text = (DOCS / "protocol.md").read_text()
    c = constants
    messages = [
        c.JSON_DECODE_ERROR, c.UNKNOWN_TASK, c.TIMEOUT_ERROR, c.UNKNOWN_TASK_ID, c.SERVICE_UNAVAILABLE,
        c.TOO_MANY_IN_FLIGHT, c.RATE_LIMITED, c.TASK_FAILED, c.WORKER_LOST, c.TASK_REVOKED,
        c.TASK_CANCELLED, c.TASK_NOT_CANCELLED, c.TASK_NOT_YOURS,
        INTERNAL_ERROR, BINARY_FRAME, c.HARD_QUEUE_FULL, c.CLIENT_BUSY,
    ]  # fmt: skip
    missing = [message for message in messages if f"`{message}`" not in text]
    assert not missing, f"docs/protocol.md does not document {missing}"


# --- docs/deployment.md: the Redis settings of `up` ------------------------------------------


DEPLOYMENT = DOCS / "deployment.md"


def redis_settings_rows() -> list[tuple[str, str]]:
    """(setting, the `up` column) of the Redis settings table."""
    rows = []
    for line in DEPLOYMENT.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`") and cells[3] != "`up`'s private Redis":
            rows.append((re.findall(r"`([^`]+)`", cells[0])[0], cells[3]))
    return rows


def test_the_deployment_doc_says_which_settings_up_gives_its_private_redis(tmp_path: Path) -> None:
    command = private_redis(Config(data_dir=tmp_path)).command()  # as `up` creates it: no password
    options = redis_options(command[1:])
    rows = redis_settings_rows()
    assert {name for name, _ in rows} >= {"maxmemory-policy", "maxmemory", "appendonly", "requirepass"}
    for name, up_column in rows:
        if up_column.startswith("set:"):
            value = re.findall(r"`([^`]*)`", up_column)[0]
            assert options.get(name) == value.strip('"'), (name, up_column, options)
        else:
            assert up_column.startswith("not set"), (name, up_column)
            assert name not in options, (name, up_column, options)
    assert not any(option.startswith("tls") for option in options)


def redis_options(arguments: list[str]) -> dict[str, str]:
    """``--name value...`` options of a redis-server command line, each value as one string."""
    options: dict[str, list[str]] = {}
    for argument in arguments:
        if argument.startswith("--"):
            current = options.setdefault(argument[2:], [])
        else:
            current.append(argument)
    return {name: " ".join(values) for name, values in options.items()}
