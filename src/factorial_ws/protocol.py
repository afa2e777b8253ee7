"""The wire protocol, without I/O: parse client frames, shape every reply.

Requests (JSON text frames):
    {"type": "factorial", "number": 5[, "progress": true]}
    {"type": "<a catalog task>", ...its parameters[, "progress": true]}
    {"type": "result", "task_id": "<uuid>"[, "progress": true]}
    {"type": "cancel", "task_id": "<uuid>"}
Any may carry an "id" (string or integer) that every reply to it echoes.

Replies:
    {"type": "result", "task_id": ...}                 ack of a factorial request (seed)
    {"type": "queued", "task_id": ..., "ahead": 3}      after the ack, when progress was asked for
    {"type": "started", "task_id": ...}                 a worker started it (progress asked for)
    {"type": "progress", "task_id": ..., "state": "PROGRESS", "info": {...}}
                                                        a task's own state (progress asked for)
    {"type": "success", "task_id": ..., "result": 120}  the exact factorial (seed), or what a
                                                        catalog task returned
    {"type": "pending", "task_id": ...}                 a looked-up task is still running
    {"type": "cancelled", "task_id": ...}               a cancel took the task back
    {"type": "error", "result": "<message>"[, "task_id": ...]}
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from .constants import (
    HARD_QUEUE,
    INVALID_REQUEST,
    JSON_DECODE_ERROR,
    SOFT_QUEUE,
    SOFT_QUEUE_MAX_NUMBER,
    UNKNOWN_TASK,
)

if TYPE_CHECKING:
    from pydantic import BaseModel

    from .catalog import Catalog, Entry

RequestId = str | int
MAX_REQUEST_ID_CHARS: Final = 128
_MAX_INT_DIGITS: Final = 30  # longer integer literals are refused before int() parses them


class ProtocolError(Exception):
    """A request that gets an error reply; the connection goes on."""

    def __init__(self, message: str, request_id: RequestId | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id


@dataclass(frozen=True)
class FactorialRequest:
    number: int
    request_id: RequestId | None = None
    progress: bool = False  # also send "queued" and "started"


@dataclass(frozen=True)
class ResultRequest:
    task_id: str
    request_id: RequestId | None = None
    progress: bool = False  # also send "started" (at once if the task has started)


@dataclass(frozen=True)
class CancelRequest:
    task_id: str
    request_id: RequestId | None = None


@dataclass(frozen=True)
class TaskRequest:
    """A request for a catalog task: its entry and its validated parameters."""

    entry: Entry
    params: BaseModel
    request_id: RequestId | None = None
    progress: bool = False  # also send "queued", "started" and the task's own states


Request = FactorialRequest | TaskRequest | ResultRequest | CancelRequest


# Outcomes of a task, as read from the result backend.
@dataclass(frozen=True)
class Success:
    digits: str  # the factorial in decimal, as the worker stored it


@dataclass(frozen=True)
class Returned:
    """What a catalog task returned, as JSON text."""

    json_text: str


@dataclass(frozen=True)
class Failure:
    message: str
    # A catalog task's result too large to read: what it takes in Redis all the same (charged to
    # its requester). Not part of what the failure is.
    stored_bytes: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Pending:
    pass


@dataclass(frozen=True)
class Started:
    """Still running, and a worker said when it started (only tasks sent with progress do)."""


@dataclass(frozen=True)
class Progress:
    """Still running, in a state of the task's own (``self.update_state``), with its meta."""

    state: str
    info_json: str  # the meta, as JSON text


Outcome = Success | Returned | Failure


# --- requests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _HugeInt:
    """An integer literal too long to be a valid number; parsed without int()'s cost (and
    without CPython's 4300-digit limit turning it into a JSON decode error)."""

    negative: bool


def _parse_int(literal: str) -> int | _HugeInt:
    digits = literal.lstrip("-")
    return _HugeInt(digits != literal) if len(digits) > _MAX_INT_DIGITS else int(literal)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_request(frame: str, *, max_number: int, catalog: Catalog | None = None) -> Request:
    """Turn one text frame into a request, or raise ProtocolError with the reply's message.
    Without a catalog, the built-in one: factorial alone."""
    try:
        data = json.loads(frame, parse_int=_parse_int, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise ProtocolError(JSON_DECODE_ERROR) from None
    if not isinstance(data, dict):
        raise ProtocolError(INVALID_REQUEST + "expected a JSON object")
    request_id = _request_id(data)
    kind = data.get("type")
    entry = _entry(catalog, kind)
    if kind == "factorial" and (catalog is None or (entry is not None and entry.builtin)):
        # The built-in factorial: the seed's parser and messages, and a fraction of the cost.
        number = _number(data, max_number, request_id)
        return FactorialRequest(number, request_id, _progress(data, request_id))
    if entry is not None:
        return TaskRequest(entry, _params(entry, data, request_id), request_id, _progress(data, request_id))
    if kind == "result":
        return ResultRequest(_task_id(data, request_id), request_id, _progress(data, request_id))
    if kind == "cancel":
        return CancelRequest(_task_id(data, request_id), request_id)
    if "type" not in data:
        raise ProtocolError(INVALID_REQUEST + "missing field 'type'", request_id)
    raise ProtocolError(UNKNOWN_TASK, request_id)


def _entry(catalog: Catalog | None, kind: object) -> Entry | None:
    return catalog.get(kind) if catalog is not None and isinstance(kind, str) else None


def _params(entry: Entry, data: dict[str, Any], request_id: RequestId | None) -> BaseModel:
    from .catalog import InvalidParams  # only a gateway with a catalog loads pydantic

    try:
        _refuse_huge_ints(data)
        return entry.validate(data)
    except InvalidParams as exc:
        raise ProtocolError(INVALID_REQUEST + str(exc), request_id) from None


def _refuse_huge_ints(value: Any, where: str = "") -> None:
    """Integer literals longer than _MAX_INT_DIGITS were not parsed (``_HugeInt``): refuse them
    by their field rather than let a model see the placeholder."""
    from .catalog import InvalidParams

    if isinstance(value, _HugeInt):
        raise InvalidParams(f"{where}: integer too long")
    if isinstance(value, dict | list):
        children = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in children:
            _refuse_huge_ints(child, f"{where}.{key}" if where else str(key))


def request_id_of(frame: str | bytes) -> RequestId | None:
    """The ``id`` of a frame that is refused without being served (rate limit, binary frame),
    so that even the refusal can be matched to its request: None unless the frame is UTF-8 JSON
    holding an object with a usable id. The gateway only sees frames within its size limit."""
    try:
        text = frame.decode() if isinstance(frame, bytes) else frame
        data = json.loads(text, parse_int=_parse_int, parse_constant=_refuse_constant)
        return _request_id(data) if isinstance(data, dict) else None
    except (ValueError, RecursionError, ProtocolError):
        return None


def _request_id(data: dict[str, Any]) -> RequestId | None:
    if "id" not in data:
        return None
    value = data["id"]
    if isinstance(value, str) and len(value) <= MAX_REQUEST_ID_CHARS:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63:
        return value
    raise ProtocolError(
        INVALID_REQUEST
        + f"'id' must be a string of at most {MAX_REQUEST_ID_CHARS} characters or a 64-bit integer"
    )


def _number(data: dict[str, Any], max_number: int, request_id: RequestId | None) -> int:
    if "number" not in data:
        raise ProtocolError(INVALID_REQUEST + "missing field 'number'", request_id)
    value = data["number"]
    if isinstance(value, _HugeInt):
        value = -1 if value.negative else max_number + 1
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError(INVALID_REQUEST + "'number' must be an integer", request_id)
    if value < 0:
        raise ProtocolError(INVALID_REQUEST + "'number' must not be negative", request_id)
    if value > max_number:
        raise ProtocolError(INVALID_REQUEST + f"'number' must be at most {max_number}", request_id)
    return value


def _progress(data: dict[str, Any], request_id: RequestId | None) -> bool:
    value = data.get("progress", False)
    if not isinstance(value, bool):
        raise ProtocolError(INVALID_REQUEST + "'progress' must be true or false", request_id)
    return value


def _task_id(data: dict[str, Any], request_id: RequestId | None) -> str:
    if "task_id" not in data:
        raise ProtocolError(INVALID_REQUEST + "missing field 'task_id'", request_id)
    value = data["task_id"]
    if not isinstance(value, str) or not is_task_id(value):
        raise ProtocolError(INVALID_REQUEST + "'task_id' must be a task id (a UUID)", request_id)
    return value


def is_task_id(value: str) -> bool:
    """Task ids are canonical lower-case UUID strings, as the gateway creates them."""
    try:
        return len(value) == 36 and str(uuid.UUID(value)) == value
    except ValueError:
        return False


def new_task_id() -> str:
    return str(uuid.uuid4())


def queue_for(number: int) -> str:
    """The seed's routing: up to 1000 is soft work, anything larger is hard."""
    return SOFT_QUEUE if number <= SOFT_QUEUE_MAX_NUMBER else HARD_QUEUE


# --- replies --------------------------------------------------------------------------------


def _reply(fields: dict[str, Any], request_id: RequestId | None) -> str:
    if request_id is not None:
        fields["id"] = request_id
    return json.dumps(fields)


def ack(task_id: str, request_id: RequestId | None = None) -> str:
    return _reply({"type": "result", "task_id": task_id}, request_id)


def pending(task_id: str, request_id: RequestId | None = None) -> str:
    return _reply({"type": "pending", "task_id": task_id}, request_id)


def queued(task_id: str, ahead: int, request_id: RequestId | None = None) -> str:
    """``ahead``: tasks in the same queue that were waiting or running when this one was sent."""
    return _reply({"type": "queued", "task_id": task_id, "ahead": ahead}, request_id)


def started(task_id: str, request_id: RequestId | None = None) -> str:
    return _reply({"type": "started", "task_id": task_id}, request_id)


def cancelled(task_id: str, request_id: RequestId | None = None) -> str:
    return _reply({"type": "cancelled", "task_id": task_id}, request_id)


def error(message: str, task_id: str | None = None, request_id: RequestId | None = None) -> str:
    fields: dict[str, Any] = {"type": "error", "result": message}
    if task_id is not None:
        fields["task_id"] = task_id
    return _reply(fields, request_id)


def success(task_id: str, digits: str, request_id: RequestId | None = None) -> str:
    """The result as an exact JSON number. The digits are spliced in as text: parsing them into
    an int and serialising it again would be quadratic for millions of digits."""
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError("a factorial is a string of decimal digits")
    head, tail = success_around(task_id, request_id)
    return head + digits + tail


def returned(task_id: str, json_text: str, request_id: RequestId | None = None) -> str:
    """A catalog task's ``success``: its result's JSON text spliced in as it is."""
    head, tail = success_around(task_id, request_id)
    return head + json_text + tail


def progress(task_id: str, state: str, info_json: str, request_id: RequestId | None = None) -> str:
    """A task's own state (``update_state``): its name and its meta, spliced in as JSON text."""
    head = f'{{"type": "progress", "task_id": {json.dumps(task_id)}, "state": {json.dumps(state)}, "info": '
    tail = "" if request_id is None else ", " + json.dumps("id") + ": " + json.dumps(request_id)
    return head + info_json + tail + "}"


def success_around(task_id: str, request_id: RequestId | None = None) -> tuple[str, str]:
    """The text of a ``success`` reply before and after its digits, for a caller that sends the
    digits from elsewhere (``gateway.big_results`` streams them from Redis' bytes)."""
    tail = "" if request_id is None else ", " + json.dumps("id") + ": " + json.dumps(request_id)
    return f'{{"type": "success", "task_id": {json.dumps(task_id)}, "result": ', tail + "}"


def outcome_reply(task_id: str, outcome: Outcome, request_id: RequestId | None = None) -> str:
    if isinstance(outcome, Success):
        return success(task_id, outcome.digits, request_id)
    if isinstance(outcome, Returned):
        return returned(task_id, outcome.json_text, request_id)
    return error(outcome.message, task_id, request_id)
