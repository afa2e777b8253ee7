"""A catalog of the Celery tasks clients may call: each entry's parameters (a pydantic model),
routing, limits and cost, checked when the catalog is built, without I/O.

A client sends ``{"type": "<name>", ...parameters}``; the entry of that name validates the
parameters with its model (unknown fields refused), and says which Celery task to send them to
as keyword arguments, on which queue, how long to wait, what the request costs the budgets, and
whether identical requests share one computation.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from ..config import ConfigError

P = TypeVar("P", bound=BaseModel)
Choice = str | Callable[[Any], str]  # a fixed value, or a function of the validated parameters

# The protocol's own message types, requests and replies: an entry of such a name would be
# ambiguous on the wire (a client could not tell a task's `result` request from a lookup).
RESERVED_NAMES: Final = frozenset(
    {"result", "cancel", "success", "error", "pending", "queued", "started", "cancelled", "progress"}
)
# The fields of a request that are not parameters: every request may carry them.
PROTOCOL_FIELDS: Final = frozenset({"type", "id", "progress"})
# Names go into URLs, HTML forms and logs: keep them plain.
_NAME_PATTERN: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")
# The largest stored result (Celery's meta, JSON) an entry allows unless it says otherwise.
DEFAULT_MAX_RESULT_BYTES: Final = 1024 * 1024


class CatalogError(ConfigError):
    """A catalog that cannot work; one line that names the entry and the problem."""


class InvalidParams(ValueError):
    """Parameters the entry's model refused: ``<field>: <what is wrong>``."""


@dataclass(frozen=True)
class Entry:
    """One task clients may call by ``name``. Built by ``Catalog.add``, which checks it."""

    name: str
    celery_task: Choice  # the name the workers registered, or a function of the parameters
    params: type[BaseModel]  # the model as given, made to refuse unknown fields
    queue: Choice
    timeout_s: float  # the gateway's wait for the result, then `Timeout error`
    share_results: bool = False
    cost: Callable[[Any], int] | None = None  # None: 1 per request
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES
    # Sent with the message as apply_async sends them (None: the worker's own settings).
    soft_time_limit_s: float | None = None
    time_limit_s: float | None = None
    builtin: bool = field(default=False, repr=False)  # the package's factorial: a faster parser

    def validate(self, fields: Mapping[str, Any]) -> BaseModel:
        """The request's parameters (its fields less ``PROTOCOL_FIELDS``), validated; raises
        InvalidParams with the first problem."""
        params = {key: value for key, value in fields.items() if key not in PROTOCOL_FIELDS}
        try:
            return self.params.model_validate(params)
        except ValidationError as exc:
            raise InvalidParams(describe_error(exc)) from None

    def task_name(self, params: BaseModel) -> str:
        return _chosen(self, "celery_task", self.celery_task, params)

    def queue_of(self, params: BaseModel) -> str:
        return _chosen(self, "queue", self.queue, params)

    def cost_of(self, params: BaseModel) -> int:
        if self.cost is None:
            return 1
        cost = self.cost(params)
        if isinstance(cost, bool) or not isinstance(cost, int) or cost < 0:
            raise CatalogError(f"catalog entry {self.name!r}: cost returned {cost!r}, not an int >= 0")
        return cost

    def kwargs(self, params: BaseModel) -> dict[str, Any]:
        """The task's keyword arguments: the parameters as JSON values (what the message carries)."""
        return params.model_dump(mode="json")

    def share_key(self, params: BaseModel) -> str:
        """What identical requests have in common: the name and the parameters' canonical JSON."""
        canonical = json.dumps(self.kwargs(params), sort_keys=True, separators=(",", ":"))
        return f"{self.name}:{canonical}"

    def describe(self) -> dict[str, Any]:
        """The entry as ``GET /tasks`` shows it: its parameters' JSON Schema, and what a client
        may want to know before calling."""
        return {
            "params": self.params.model_json_schema(),
            "timeout": self.timeout_s,
            "share_results": self.share_results,
        }


def _chosen(entry: Entry, what: str, choice: Choice, params: BaseModel) -> str:
    value = choice(params) if callable(choice) else choice
    if not isinstance(value, str) or not value:
        raise CatalogError(f"catalog entry {entry.name!r}: {what} returned {value!r}, not a name")
    return value


def describe_error(exc: ValidationError) -> str:
    """``<field>: <what is wrong>`` for the first of pydantic's errors (the field path dotted,
    ``params`` when the problem is the whole object)."""
    first = exc.errors(include_url=False, include_context=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "params"
    return f"{where}: {first['msg']}"


class Catalog:
    """The tasks clients may call, by name. ``add`` checks each entry at once, so a catalog
    that imports is one that works."""

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}

    def add(
        self,
        name: str,
        *,
        celery_task: Choice,
        params: type[BaseModel],
        queue: Choice,
        timeout: float,
        share_results: bool = False,
        cost: Callable[[Any], int] | None = None,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
        soft_time_limit: float | None = None,
        time_limit: float | None = None,
        **unknown: Any,
    ) -> Entry:
        """Expose a Celery task as ``name``. ``celery_task`` and ``queue``: a name, or a function
        of the validated parameters returning one. ``timeout``: seconds the gateway waits for
        the result. ``soft_time_limit``/``time_limit``: sent with each message, as apply_async
        sends them. ``cost``: a function of the parameters (default: 1 per request)."""
        where = f"catalog entry {name!r}"
        if unknown:
            raise CatalogError(f"{where}: unknown setting {sorted(unknown)[0]!r}")
        _check_name(name, where, self._entries)
        entry = Entry(
            name=name,
            celery_task=_checked_choice(celery_task, where, "celery_task"),
            params=_forbidding_extra(_checked_model(params, where)),
            queue=_checked_choice(queue, where, "queue"),
            timeout_s=_checked_seconds(timeout, where, "timeout"),
            share_results=_checked_bool(share_results, where, "share_results"),
            cost=_checked_function(cost, where, "cost"),
            max_result_bytes=_checked_size(max_result_bytes, where),
            soft_time_limit_s=_optional_seconds(soft_time_limit, where, "soft_time_limit"),
            time_limit_s=_optional_seconds(time_limit, where, "time_limit"),
        )
        self._entries[name] = entry
        return entry

    def _add_builtin(self, entry: Entry) -> None:
        """The package's own entry (factorial), added through ``add`` and then marked."""
        self._entries[entry.name] = Entry(**{**entry.__dict__, "builtin": True})

    def get(self, name: str) -> Entry | None:
        return self._entries.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def describe(self) -> dict[str, dict[str, Any]]:
        """``GET /tasks``: every entry, keyed by name."""
        return {entry.name: entry.describe() for entry in self}


# --- checks (each names the entry and the setting) --------------------------------------------


def _check_name(name: object, where: str, taken: Mapping[str, Entry]) -> None:
    if not isinstance(name, str) or not _NAME_PATTERN.fullmatch(name):
        raise CatalogError(
            f"{where}: a name is 1-64 letters, digits, '_', '.' or '-', starting with a letter or '_'"
        )
    if name in RESERVED_NAMES:
        reserved = ", ".join(sorted(RESERVED_NAMES))
        raise CatalogError(f"{where}: the name is reserved by the protocol ({reserved})")
    if name in taken:
        raise CatalogError(f"{where}: added twice")


def _checked_choice(value: object, where: str, setting: str) -> Choice:
    if callable(value) or (isinstance(value, str) and value):
        return value
    raise CatalogError(f"{where}: {setting} must be a name or a function of the parameters, not {value!r}")


def _checked_model(value: object, where: str) -> type[BaseModel]:
    if not (isinstance(value, type) and issubclass(value, BaseModel)):
        raise CatalogError(f"{where}: params must be a pydantic model (a BaseModel subclass), not {value!r}")
    for name, field_info in value.model_fields.items():
        if (field_info.alias or name) in PROTOCOL_FIELDS:
            # A client's `id` or `progress` is the protocol's: the task could never receive it.
            raise CatalogError(f"{where}: params field {name!r} is a protocol field (type, id, progress)")
    return value


def _forbidding_extra(model: type[P]) -> type[P]:
    """The model, refusing unknown fields (a misspelt parameter must not be silently dropped)."""
    if model.model_config.get("extra") == "forbid":
        return model
    namespace = {"model_config": ConfigDict(extra="forbid"), "__module__": model.__module__}
    return type(model.__name__, (model,), namespace)


def _checked_seconds(value: object, where: str, setting: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < math.inf:
        return float(value)
    raise CatalogError(f"{where}: {setting} must be a positive number of seconds, not {value!r}")


def _optional_seconds(value: object, where: str, setting: str) -> float | None:
    return None if value is None else _checked_seconds(value, where, setting)


def _checked_bool(value: object, where: str, setting: str) -> bool:
    if isinstance(value, bool):
        return value
    raise CatalogError(f"{where}: {setting} must be True or False, not {value!r}")


def _checked_function(value: object, where: str, setting: str) -> Callable[[Any], int] | None:
    if value is None or callable(value):
        return value
    raise CatalogError(f"{where}: {setting} must be a function of the parameters, not {value!r}")


def _checked_size(value: object, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise CatalogError(f"{where}: max_result_bytes must be a positive int, not {value!r}")
