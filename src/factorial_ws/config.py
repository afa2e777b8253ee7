"""Every setting in one validated object, read from environment variables.

Each field is declared once, with ``setting()``: its environment variable, its default (or how it
derives from other settings) and its check; its annotation says how the variable is parsed.
``SETTINGS``, built from those declarations in field order, is the table the README and
docs/operations.md mirror. The CLI only overrides fields; it never reads the environment itself.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from .constants import DEFAULT_MAX_NUMBER, DEFAULT_PORT
from .costs import factorial_cost

T = TypeVar("T")
Check = Callable[[T], str | None]  # the problem with a value, or None if it can work


class ConfigError(ValueError):
    """A setting has a value that cannot work; the message names the variable."""


class _Derived:
    def __repr__(self) -> str:
        return "DERIVED"


# The default of a setting with derive=: a placeholder that __post_init__ replaces.
DERIVED: Any = _Derived()


# Every Config default is a call to setting(), which returns a dataclasses.field; ruff cannot see
# that and would flag each field of a type it does not know to be immutable (Path).
# ruff: noqa: RUF009
def setting(
    default: T = DERIVED,
    *,
    env: str,
    check: Check[T] | None = None,
    clean: Callable[[T], T] | None = None,
    derive: Callable[[Config], T] | None = None,
) -> T:
    """A Config field carrying its environment variable and check beside its default; the field's
    annotation is the type the variable is parsed as.

    ``clean`` puts a given value in canonical form before the check. ``derive`` replaces
    ``default``: the default is then ``derive(config)``, computed from settings that are not
    derived themselves.
    """
    metadata = {"env": env, "check": check, "clean": clean, "derive": derive}
    return dataclasses.field(default=default, metadata=metadata)


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be positive"


def _not_negative(value: int) -> str | None:
    return None if value >= 0 else "must be 0 or more"


def _fraction(value: float) -> str | None:
    return None if 0 < value <= 1 else "must be above 0 and at most 1"


def _port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else "must be a TCP port (0-65535)"


def _redis_url(value: str) -> str | None:
    nodes = [urlsplit(node) for node in value.split(";")]
    if len(nodes) > 1 or nodes[0].scheme == "sentinel":
        # Celery's form for Sentinel: sentinel://host:26379;sentinel://host2:26379/0
        if any(node.scheme != "sentinel" for node in nodes):
            return "lists several nodes: each must be a sentinel:// URL, separated by ';'"
        return None if all(node.hostname for node in nodes) else "has a sentinel:// node without a host"
    parts = nodes[0]
    if parts.scheme not in ("redis", "rediss", "unix"):
        return "must be a redis://, rediss:// or unix:// URL, or sentinel:// URLs separated by ';'"
    return None if parts.hostname or parts.scheme == "unix" else "has no host"


def _one_of(*allowed: str) -> Check[str]:
    return lambda value: None if value in allowed else f"must be one of {', '.join(allowed)}"


def _redis_memory(value: str) -> str | None:
    # What Redis' maxmemory takes: bytes, or a number with a unit.
    return None if re.fullmatch(r"\d+(b|k|kb|m|mb|g|gb)?", value.lower()) else "must be like 512mb or 2gb"


def _import_string(value: str | None) -> str | None:
    if value is None:
        return None
    module, _, attribute = value.partition(":")
    return None if module and attribute else "must be an import string, module:attribute"


def _existing_file(value: Path | None) -> str | None:
    return None if value is None or value.is_file() else "no such file"


def _origins(value: tuple[str, ...]) -> tuple[str, ...]:
    # The gateway compares the Origin header as a string, and browsers send scheme://host[:port]
    # in lower case with no trailing slash: an entry written like a URL would refuse them all.
    return tuple(origin.rstrip("/").lower() for origin in value)


def _bare_origins(value: tuple[str, ...]) -> str | None:
    for origin in value:
        if not _is_origin(origin):
            return f"{origin!r} is not an origin: scheme://host[:port], without a path or query"
    return None


def _is_origin(text: str) -> bool:
    parts = urlsplit(text)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number or out of range
    except ValueError:
        return False
    return bool(parts.hostname) and "@" not in parts.netloc and text == f"{parts.scheme}://{parts.netloc}"


def _soft_task_timeout(config: Config) -> float:
    # The gateway waits at most HARD_TASK_TIMEOUT for any result, so a shorter one alone caps it.
    return float(min(10.0, config.hard_task_timeout_s))


def _visibility_timeout(config: Config) -> int:
    # Above twice the hard limit (a task can wait one in a prefetch buffer, then run one) with a
    # minute to spare for the 1-10 s sweep and clocks that differ between machines.
    seconds = 2 * config.hard_task_timeout_s + 60
    # An infinite hard limit has no finite visibility timeout: keep 300, which is then refused.
    return max(300, math.ceil(seconds)) if math.isfinite(seconds) else 300


def _task_expires(config: Config) -> float:
    # A task that started in time, then lost its worker outright, is handed out again after
    # VISIBILITY_TIMEOUT: it must not have expired by then.
    return float(2 * _visibility_timeout(config))


def _hard_queue_max_digits(config: Config) -> int:
    # About 25 s of a hard pool's work: 25 numbers near a million (1 s each) per worker process.
    return 25 * config.hard_concurrency * factorial_cost(1_000_000)


def _stored_bytes_per_client(config: Config) -> int:
    # A quarter of what `up` lets its private Redis hold: four addresses at their budget leave it
    # room, and the gateways' memory guard refuses large work before Redis is full.
    return redis_memory_bytes(config.redis_maxmemory) // 4


_REDIS_MEMORY_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1024,
    "m": 10**6,
    "mb": 1024**2,
    "g": 10**9,
    "gb": 1024**3,
}


def redis_memory_bytes(value: str) -> int:
    """Redis' own reading of a ``maxmemory`` value (``512mb``, ``1gb``, ``1000000``)."""
    match = re.fullmatch(r"(\d+)([a-z]*)", value.lower())
    if not match or match[2] not in _REDIS_MEMORY_UNITS:
        raise ValueError(f"not a Redis memory size: {value!r}")
    return int(match[1]) * _REDIS_MEMORY_UNITS[match[2]]


@dataclass(frozen=True)
class Config:
    # Redis: broker and result backend for every process.
    redis_url: str = setting("redis://localhost:6379/0", env="REDIS_URL", check=_redis_url)
    # With a sentinel:// REDIS_URL: the name the Sentinels know the master by, and their password
    # (the master's own password goes in the URL, as for redis://).
    redis_sentinel_master: str | None = setting(None, env="REDIS_SENTINEL_MASTER")
    redis_sentinel_password: str | None = setting(None, env="REDIS_SENTINEL_PASSWORD")
    # Replicas that must hold a task (Redis WAIT) before its client gets the ack; 0: no wait.
    redis_min_replicas_ack: int = setting(0, env="REDIS_MIN_REPLICAS_ACK", check=_not_negative)

    # Gateway
    ws_host: str = setting("localhost", env="WS_HOST")
    ws_port: int = setting(DEFAULT_PORT, env="WS_PORT", check=_port)
    ws_processes: int = setting(1, env="WS_PROCESSES", check=_not_negative)  # 0: one per core

    # Timeouts (seconds). The task limits are enforced by the worker pool; the gateway waits
    # at most hard_task_timeout_s for any result.
    soft_task_timeout_s: float = setting(env="SOFT_TASK_TIMEOUT", check=_positive, derive=_soft_task_timeout)
    hard_task_timeout_s: float = setting(60.0, env="HARD_TASK_TIMEOUT", check=_positive)
    result_expires_s: int = setting(3600, env="RESULT_EXPIRES", check=_positive)
    visibility_timeout_s: int = setting(env="VISIBILITY_TIMEOUT", derive=_visibility_timeout)
    # A task not started this long after its request is discarded by the worker (Celery's expires).
    task_expires_s: float = setting(env="TASK_EXPIRES", check=_positive, derive=_task_expires)
    ping_interval_s: float = setting(20.0, env="WS_PING_INTERVAL", check=_positive)
    ping_timeout_s: float = setting(20.0, env="WS_PING_TIMEOUT", check=_positive)
    slow_consumer_timeout_s: float = setting(30.0, env="WS_SLOW_CONSUMER_TIMEOUT", check=_positive)

    # Limits
    max_number: int = setting(DEFAULT_MAX_NUMBER, env="MAX_NUMBER", check=_positive)
    max_task_attempts: int = setting(3, env="MAX_TASK_ATTEMPTS", check=_positive)
    max_message_bytes: int = setting(64 * 1024, env="WS_MAX_MESSAGE_BYTES", check=_positive)
    max_tasks_in_flight: int = setting(256, env="WS_MAX_TASKS_IN_FLIGHT", check=_positive)
    max_output_bytes: int = setting(16 * 1024 * 1024, env="WS_MAX_OUTPUT_BYTES", check=_positive)
    # Distinct results a gateway process reads from Redis and sends, over all its connections.
    max_output_bytes_per_process: int = setting(
        128 * 1024 * 1024, env="WS_MAX_OUTPUT_BYTES_PER_PROCESS", check=_positive
    )
    # A result must leave at this rate at least (after WS_SLOW_CONSUMER_TIMEOUT), or its client
    # is a slow consumer: the budgets above are then held for a bounded time.
    min_output_bytes_per_s: int = setting(64 * 1024, env="WS_MIN_OUTPUT_RATE", check=_positive)
    rate_limit_per_s: float = setting(200.0, env="WS_RATE_LIMIT", check=_positive)
    rate_limit_burst: int = setting(400, env="WS_RATE_BURST", check=_positive)
    max_connections: int = setting(20_000, env="WS_MAX_CONNECTIONS", check=_positive)
    # One computation per number: a request reuses a queued, running or stored task of its number.
    result_reuse: bool = setting(True, env="RESULT_REUSE")
    # Budgets of the hard queue (0: none), in cost: the digits of n! (costs.py), counted from a
    # task's submission until a worker takes it out of the queue. Past the queue's budget, an
    # address below its fair share of it is still admitted.
    hard_queue_max_digits: int = setting(
        env="HARD_QUEUE_MAX_DIGITS", check=_not_negative, derive=_hard_queue_max_digits
    )
    hard_queue_digits_per_client: int = setting(
        45_000_000, env="HARD_QUEUE_DIGITS_PER_CLIENT", check=_not_negative
    )
    # The bytes of the results one client address's tasks stored, each over its RESULT_EXPIRES.
    stored_bytes_per_client: int = setting(
        env="STORED_BYTES_PER_CLIENT", check=_not_negative, derive=_stored_bytes_per_client
    )
    # Past this fraction of Redis' maxmemory, new large tasks are refused (1: only when full).
    redis_memory_high_water: float = setting(0.8, env="REDIS_MEMORY_HIGH_WATER", check=_fraction)

    # Security
    token: str | None = setting(None, env="WS_TOKEN")
    allowed_origins: tuple[str, ...] = setting(
        (), env="WS_ALLOWED_ORIGINS", clean=_origins, check=_bare_origins
    )
    tls_cert: Path | None = setting(None, env="WS_TLS_CERT", check=_existing_file)
    tls_key: Path | None = setting(None, env="WS_TLS_KEY", check=_existing_file)

    # Logging
    log_level: str = setting(
        "INFO", env="LOG_LEVEL", clean=str.upper, check=_one_of("DEBUG", "INFO", "WARNING", "ERROR")
    )
    log_format: str = setting("text", env="LOG_FORMAT", check=_one_of("text", "json"))
    # One line per connection, request and result (errors are logged either way).
    access_log: bool = setting(False, env="ACCESS_LOG")

    # Catalog: the tasks clients may call, as module:attribute naming a factorial_ws.Catalog
    # (unset: the built-in catalog, factorial alone).
    tasks: str | None = setting(None, env="TASKS", check=_import_string)
    # A task that raised is answered "Task failed: <exception type>"; with this, also its message.
    task_error_messages: bool = setting(False, env="TASK_ERROR_MESSAGES")
    # At most this many `progress` messages a second per task and connection (the latest wins).
    progress_per_s: float = setting(4.0, env="PROGRESS_PER_S", check=_positive)
    # The budgets of a catalog task's queue (any queue but soft and hard), in its entries' cost
    # (default 1 per request), counted until a worker takes the task, as HARD_QUEUE_MAX_DIGITS
    # and HARD_QUEUE_DIGITS_PER_CLIENT count the hard queue's (0: no limit).
    queue_max_cost: int = setting(10_000, env="QUEUE_MAX_COST", check=_not_negative)
    queue_cost_per_client: int = setting(1_000, env="QUEUE_COST_PER_CLIENT", check=_not_negative)

    # `factorial-ws up`: private Redis data and worker pool sizes.
    data_dir: Path = setting(Path(".factorial-ws"), env="FACTORIAL_WS_DATA_DIR")
    soft_concurrency: int = setting(2, env="SOFT_CONCURRENCY", check=_positive)
    hard_concurrency: int = setting(2, env="HARD_CONCURRENCY", check=_positive)
    redis_maxmemory: str = setting("1gb", env="REDIS_MAXMEMORY", clean=str.lower, check=_redis_memory)
    # The private Redis's port, the same at every start so its URL can be kept (0: any free one).
    redis_port: int = setting(6380, env="REDIS_PORT", check=_port)
    # Above 0, `up` runs a master, this many replicas and three Sentinels instead of one Redis.
    redis_replicas: int = setting(0, env="REDIS_REPLICAS", check=_not_negative)
    # `up` and a multi-process gateway start a child that exited again after this delay, doubled
    # for each further exit within a minute (supervisor/child.py).
    restart_delay_s: float = setting(0.5, env="RESTART_DELAY", check=_positive)

    def __post_init__(self) -> None:
        for row in SETTINGS.values():
            written = value = getattr(self, row.name)
            if value is DERIVED:
                continue
            if row.clean:
                value = row.clean(value)
                object.__setattr__(self, row.name, value)
            problem = row.check(value) if row.check else None
            if problem:
                # As the user wrote it (before clean), in the variable's own syntax, not a repr.
                raise ConfigError(f"{row.env}={_env_text(written)}: {problem}")
        # Derived from checked values, so a bad HARD_TASK_TIMEOUT is reported under its own name
        # rather than as the SOFT_TASK_TIMEOUT derived from it.
        for row in SETTINGS.values():
            if getattr(self, row.name) is DERIVED and row.derive:
                object.__setattr__(self, row.name, row.derive(self))
        if self.visibility_timeout_s <= 2 * self.hard_task_timeout_s:
            raise ConfigError(
                f"VISIBILITY_TIMEOUT={_env_text(self.visibility_timeout_s)}: must exceed twice "
                f"HARD_TASK_TIMEOUT ({self.hard_task_timeout_s:g} s), or a task still waiting "
                "in a worker's prefetch buffer is delivered twice"
            )
        if self.soft_task_timeout_s > self.hard_task_timeout_s:
            raise ConfigError(
                f"SOFT_TASK_TIMEOUT={_env_text(self.soft_task_timeout_s)}: must not exceed "
                f"HARD_TASK_TIMEOUT ({self.hard_task_timeout_s:g} s), the longest the gateway "
                "waits for any result"
            )
        if self.redis_url.startswith("sentinel://") and not self.redis_sentinel_master:
            raise ConfigError(
                "REDIS_SENTINEL_MASTER: must name the master (Sentinel's `monitor` name) "
                "when REDIS_URL is a sentinel:// URL"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("WS_TLS_CERT and WS_TLS_KEY must be given together")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Build from environment variables (``os.environ`` by default), then ``overrides``."""
        environ = os.environ if environ is None else environ
        for retired, successor in RETIRED_SETTINGS.items():
            if environ.get(retired):
                raise ConfigError(f"{retired} is retired: {successor}")
        values: dict[str, Any] = {}
        for row in SETTINGS.values():
            raw = environ.get(row.env)
            if raw:  # unset or empty: the default
                values[row.name] = row.parse(raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> Config:
        # A value equal to its derived default is that default, and follows what it derives from:
        # otherwise Config().replace(hard_task_timeout_s=300) would keep VISIBILITY_TIMEOUT=300.
        for row in SETTINGS.values():
            if row.derive and row.name not in changes and getattr(self, row.name) == row.derive(self):
                changes[row.name] = DERIVED
        return dataclasses.replace(self, **changes)

    def to_env(self) -> dict[str, str]:
        """The environment that makes a child process build this same config."""
        env = {}
        for row in SETTINGS.values():
            value = getattr(self, row.name)
            if value is None:
                continue
            env[row.env] = _env_text(value)
        return env

    @property
    def ws_scheme(self) -> str:
        return "wss" if self.tls_cert else "ws"

    @property
    def gateway_processes(self) -> int:
        return self.ws_processes or os.cpu_count() or 1

    @property
    def client_host(self) -> str:
        """Where a client on this machine reaches the gateway (a wildcard bind is not a host)."""
        return "localhost" if self.ws_host in ("", "0.0.0.0", "::") else self.ws_host

    @property
    def public_url(self) -> str:
        return f"{self.ws_scheme}://{self.client_host}:{self.ws_port}/"

    @property
    def page_url(self) -> str:
        """The browser page on the same port."""
        scheme = "https" if self.tls_cert else "http"
        return f"{scheme}://{self.client_host}:{self.ws_port}/"


# Settings that no longer exist, and what replaces each: set, they stop the process rather than
# be ignored, since the limit their operator meant would silently be gone.
RETIRED_SETTINGS: Mapping[str, str] = {
    "HARD_QUEUE_LIMIT": "the hard queue is budgeted in digits of n!, not tasks: use HARD_QUEUE_MAX_DIGITS",
    "HARD_TASKS_PER_CLIENT": (
        "a client address is budgeted in digits of n! queued, not tasks: use HARD_QUEUE_DIGITS_PER_CLIENT"
    ),
}

_LIST = tuple[str, ...]  # a comma-separated variable
_PARSED_KINDS: tuple[Any, ...] = (int, float, str, Path, bool, _LIST)
_BOOLS = dict.fromkeys(("1", "true", "yes", "on"), True) | dict.fromkeys(("0", "false", "no", "off"), False)


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return ",".join(value) if isinstance(value, tuple) else str(value)


@dataclass(frozen=True)
class Setting:
    """A row of ``SETTINGS``: one field's ``setting()`` declaration and the type it is parsed as."""

    name: str  # the Config field
    env: str
    kind: Any  # one of _PARSED_KINDS; for an `X | None` field, X (an unset variable is the default)
    check: Check[Any] | None
    clean: Callable[[Any], Any] | None
    derive: Callable[[Config], Any] | None

    def parse(self, raw: str) -> Any:
        if self.kind == _LIST:
            return tuple(item.strip() for item in raw.split(",") if item.strip())
        if self.kind is bool:
            if raw.strip().lower() not in _BOOLS:
                raise ConfigError(f"{self.env}={raw}: expected 1 or 0")
            return _BOOLS[raw.strip().lower()]
        try:
            return self.kind(raw)
        except ValueError:
            raise ConfigError(f"{self.env}={raw}: expected {self.kind.__name__}") from None


def _settings_table() -> dict[str, Setting]:
    hints = typing.get_type_hints(Config)
    table = {}
    for f in dataclasses.fields(Config):
        kind = hints[f.name]
        if typing.get_origin(kind) is types.UnionType:
            others = [arg for arg in typing.get_args(kind) if arg is not type(None)]
            kind = others[0] if len(others) == 1 else kind
        meta = f.metadata
        # Fail at import, not at the first process that happens to set the variable.
        if kind not in _PARSED_KINDS:
            raise TypeError(f"Config.{f.name}: no parser for {kind}")
        if (f.default is DERIVED) != (meta["derive"] is not None):
            raise TypeError(f"Config.{f.name}: give setting() a default or a derive=, not both")
        table[f.name] = Setting(f.name, meta["env"], kind, meta["check"], meta["clean"], meta["derive"])
    return table


SETTINGS: Mapping[str, Setting] = _settings_table()


def env_name(field_name: str) -> str:
    return SETTINGS[field_name].env
