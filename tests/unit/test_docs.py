"""The docs stay true to the code: every setting with its default, every error message."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from factorial_ws import constants
from factorial_ws.config import Config, env_name
from factorial_ws.gateway.session import BINARY_FRAME, INTERNAL_ERROR

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _documented_default(value: object) -> str:
    if value is None or value == ():
        return "unset"
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
        INTERNAL_ERROR, BINARY_FRAME,
    ]  # fmt: skip
    missing = [message for message in messages if f"`{message}`" not in text]
    assert not missing, f"docs/protocol.md does not document {missing}"
