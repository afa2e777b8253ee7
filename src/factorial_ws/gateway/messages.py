"""The task messages the gateway sends, as kombu's Redis transport would push them, and the
record that marks each task id as known.

Celery's own ``apply_async`` is synchronous I/O. Instead, Celery builds the task message (its
protocol 2 headers and body) and this module wraps it in the envelope kombu's Redis transport
uses; ``producer.py`` pushes it. The envelope names the anonymous exchange, which kombu routes to
the queue named by the routing key; that is also where a redelivered (restored) message goes.

A catalog task (``Call``) goes the same way: its message is the one ``apply_async`` would send
for the task its entry names, with the parameters as keyword arguments, on the entry's queue;
identical requests of an entry that shares results share a task by their parameters (``share_key``)
as factorials do by their number.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import socket
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from celery import Celery
from celery.app.amqp import task_message

from ..constants import CLIENT_HEADER, PROGRESS_HEADER, SHARED_KEY_PREFIX, TASK_NAME_BY_QUEUE

if TYPE_CHECKING:
    from pydantic import BaseModel

    from ..catalog import Entry

_ORIGIN = f"gateway@{socket.gethostname()}"


def task_envelope(
    app: Celery,
    task_id: str,
    queue: str,
    number: int,
    *,
    expires_s: float | None = None,
    progress: bool = False,
    client_host: str = "",
) -> bytes:
    """The bytes kombu's Redis transport would LPUSH for ``task.apply_async((number,))``
    (with ``expires=expires_s``: a worker discards the task once that many seconds have passed;
    with ``progress``, a header that asks the worker to store Celery's STARTED state; and a header
    naming the client address that the stored result is charged to, "" for nobody)."""
    # The reprs are given: Celery's own saferepr of the arguments was a third of this
    # function's cost on the gateway's hot path.
    task = app.tasks[TASK_NAME_BY_QUEUE[queue]]
    message = app.amqp.as_task_v2(
        task_id,
        task.name,
        args=(number,),
        kwargs={},
        origin=_ORIGIN,
        argsrepr=f"({number},)",
        kwargsrepr="{}",
        expires=expires_s,
        # As apply_async does: the worker enforces the message's limits over its own settings.
        time_limit=task.time_limit,
        soft_time_limit=task.soft_time_limit,
    )
    return _envelope(message, queue, progress, client_host)


@dataclass(frozen=True)
class Call:
    """A request for a catalog task, as its entry made it: what to send, where, and what the
    request stands for."""

    name: str  # the catalog entry (the request's type)
    celery_task: str  # the task's registered name
    kwargs: dict[str, Any]  # the validated parameters, as JSON values
    queue: str
    cost: int = 1
    share_key: str | None = None  # identical requests share one task (None: never)
    soft_time_limit_s: float | None = None
    time_limit_s: float | None = None

    @classmethod
    def of(cls, entry: Entry, params: BaseModel) -> Call:
        share_key = entry.share_key(params) if entry.share_results else None
        return cls(
            entry.name,
            entry.task_name(params),
            entry.kwargs(params),
            entry.queue_of(params),
            entry.cost_of(params),
            share_key,
            entry.soft_time_limit_s,
            entry.time_limit_s,
        )

    @property
    def shared_key(self) -> str:
        """The Redis key naming the task of these parameters (the parameters may be long)."""
        digest = hashlib.sha256((self.share_key or "").encode()).hexdigest()
        return SHARED_KEY_PREFIX + digest


def call_envelope(
    app: Celery,
    task_id: str,
    call: Call,
    *,
    expires_s: float | None = None,
    progress: bool = False,
    client_host: str = "",
) -> bytes:
    """The bytes kombu's Redis transport would LPUSH for ``apply_async(kwargs=call.kwargs)`` of
    the task ``call`` names, on its queue, with its time limits (and, as for factorial, the
    client address its stored result is charged to by a worker of ours: a stock worker ignores
    the header)."""
    message = app.amqp.as_task_v2(
        task_id,
        call.celery_task,
        args=(),
        kwargs=call.kwargs,
        origin=_ORIGIN,
        expires=expires_s,
        # (celery-types says int; Celery takes float seconds)
        time_limit=call.time_limit_s,  # type: ignore[arg-type]
        soft_time_limit=call.soft_time_limit_s,  # type: ignore[arg-type]
    )
    return _envelope(message, call.queue, progress, client_host)


def _envelope(message: task_message, queue: str, progress: bool, client_host: str) -> bytes:
    body = json.dumps(message.body).encode()
    headers = {**message.headers, PROGRESS_HEADER: True} if progress else message.headers
    headers = {**headers, CLIENT_HEADER: client_host}
    envelope: dict[str, Any] = {
        "body": base64.b64encode(body).decode("ascii"),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            **message.properties,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return json.dumps(envelope).encode()


class Envelopes:
    """``task_envelope``'s bytes at a fraction of its cost: Celery builds each kind of message
    (queue, progress) once, with placeholders, and a request fills in its id, number, expiry,
    delivery tag and client address. Building the message anew took a sixth of the gateway's CPU
    per task."""

    _FIELDS: Final = ("id", "argsrepr", "expires", "delivery_tag", "body", "client")

    def __init__(self, app: Celery, expires_s: float | None) -> None:
        self._app = app
        self._expires_s = expires_s
        self._templates: dict[tuple[str, bool], str] = {}

    def make(self, task_id: str, queue: str, number: int, progress: bool, client_host: str = "") -> bytes:
        template = self._templates.get((queue, progress))
        if template is None:
            template = self._templates[(queue, progress)] = self._template(queue, progress)
        expires = ""
        if self._expires_s is not None:
            expires = (datetime.now(UTC) + timedelta(seconds=self._expires_s)).isoformat()
        return (
            template
            % {
                "id": task_id,
                "argsrepr": f"({number},)",
                "expires": expires,
                "delivery_tag": str(uuid.uuid4()),
                "body": base64.b64encode(b"[[%d]" % number + self._body_tail).decode("ascii"),
                # Escaped as a JSON string's content (an address is plain ASCII, but be safe).
                "client": json.dumps(client_host)[1:-1],
            }
        ).encode()

    @functools.cached_property
    def _body_tail(self) -> bytes:
        body = base64.b64decode(json.loads(task_envelope(self._app, "-", "soft", 0))["body"])
        return body.removeprefix(b"[[0]")

    def _template(self, queue: str, progress: bool) -> str:
        marks = {name: f"\x00{name}\x00" for name in self._FIELDS}
        envelope = json.loads(
            task_envelope(
                self._app,
                marks["id"],
                queue,
                0,
                expires_s=self._expires_s,
                progress=progress,
                client_host=marks["client"],
            )
        )
        return _template_of(envelope, marks, "argsrepr", self._expires_s)


class CallEnvelopes:
    """``call_envelope``'s bytes at a fraction of its cost, as ``Envelopes`` makes factorial's:
    Celery builds each kind of message (task, queue, time limits, progress) once, with
    placeholders, and a request fills in its id, keyword arguments, expiry, delivery tag and
    client address. Building the message anew took a quarter of a catalog request's CPU."""

    _FIELDS: Final = ("id", "kwargsrepr", "expires", "delivery_tag", "body", "client")

    def __init__(self, app: Celery, expires_s: float | None) -> None:
        self._app = app
        self._expires_s = expires_s
        # By kind: the template, and the body's tail after the keyword arguments.
        self._templates: dict[tuple[str, str, float | None, float | None, bool], tuple[str, bytes]] = {}

    def make(self, task_id: str, call: Call, progress: bool, client_host: str = "") -> bytes:
        kind = (call.celery_task, call.queue, call.soft_time_limit_s, call.time_limit_s, progress)
        made = self._templates.get(kind)
        if made is None:
            made = self._templates[kind] = self._template(call, progress)
        template, tail = made
        expires = ""
        if self._expires_s is not None:
            expires = (datetime.now(UTC) + timedelta(seconds=self._expires_s)).isoformat()
        kwargs = json.dumps(call.kwargs)
        return (
            template
            % {
                "id": task_id,
                # Only shown (logs, Flower): the JSON, cut as Celery cuts its repr.
                "kwargsrepr": json.dumps(kwargs[:_KWARGSREPR_MAX_CHARS])[1:-1],
                "expires": expires,
                "delivery_tag": str(uuid.uuid4()),
                "body": base64.b64encode(b"[[], " + kwargs.encode() + tail).decode("ascii"),
                "client": json.dumps(client_host)[1:-1],
            }
        ).encode()

    def _template(self, call: Call, progress: bool) -> tuple[str, bytes]:
        marks = {name: f"\x00{name}\x00" for name in self._FIELDS}
        empty = replace(call, kwargs={})
        envelope = json.loads(
            call_envelope(
                self._app,
                marks["id"],
                empty,
                expires_s=self._expires_s,
                progress=progress,
                client_host=marks["client"],
            )
        )
        tail = base64.b64decode(envelope["body"]).removeprefix(b"[[], {}")
        return _template_of(envelope, marks, "kwargsrepr", self._expires_s), tail


_KWARGSREPR_MAX_CHARS: Final = 1024  # Celery's argsrepr_maxsize


def _template_of(
    envelope: dict[str, Any], marks: dict[str, str], repr_field: str, expires_s: float | None
) -> str:
    """A %-template of ``envelope`` (built by Celery with ``marks`` in its fields): the request's
    own values, the repr, expiry, delivery tag and body, become %(name)s placeholders."""
    headers, properties = envelope["headers"], envelope["properties"]
    headers[repr_field] = marks[repr_field]
    if expires_s is not None:
        headers["expires"] = marks["expires"]
    properties["delivery_tag"] = marks["delivery_tag"]
    envelope["body"] = marks["body"]
    template = json.dumps(envelope).replace("%", "%%")
    for name, mark in marks.items():
        template = template.replace(json.dumps(mark), f'"%({name})s"')
    return template


def submitted_record(queue: str, number: int) -> bytes:
    return json.dumps({"queue": queue, "number": number}).encode()


def call_record(call: Call) -> bytes:
    """A catalog task's record: lookups read from it which task it is (``results.look``)."""
    return json.dumps({"queue": call.queue, "task": call.name}).encode()
