"""Every setting in one validated object, read from environment variables.

Each field maps to one environment variable (``SETTINGS`` below is the table the README mirrors).
The CLI only overrides fields; it never reads the environment itself.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .constants import DEFAULT_PORT


class ConfigError(ValueError):
    """A setting has a value that cannot work; the message names the variable."""


@dataclass(frozen=True)
class Config:
    # Redis: broker and result backend for every process.
    redis_url: str = "redis://localhost:6379/0"

    # Gateway
    ws_host: str = "localhost"
    ws_port: int = DEFAULT_PORT
    ws_processes: int = 1  # 0: one per core

    # Timeouts (seconds). The task limits are enforced by the worker pool; the gateway waits
    # at most hard_task_timeout_s for any result.
    soft_task_timeout_s: float = 10.0
    hard_task_timeout_s: float = 60.0
    result_expires_s: int = 3600
    visibility_timeout_s: int = 300
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0

    # Limits
    max_number: int = 1_000_000
    max_task_attempts: int = 3
    max_message_bytes: int = 64 * 1024
    max_tasks_in_flight: int = 256
    rate_limit_per_s: float = 200.0
    rate_limit_burst: int = 400
    max_connections: int = 20_000

    # Security
    token: str | None = None
    allowed_origins: tuple[str, ...] = ()
    tls_cert: Path | None = None
    tls_key: Path | None = None

    # Logging
    log_level: str = "INFO"
    log_format: str = "text"

    # `factorial-ws up`: private Redis data and worker pool sizes.
    data_dir: Path = field(default_factory=lambda: Path(".factorial-ws"))
    soft_concurrency: int = 2
    hard_concurrency: int = 2

    def __post_init__(self) -> None:
        for name, check in _CHECKS.items():
            problem = check(getattr(self, name))
            if problem:
                raise ConfigError(f"{env_name(name)}={getattr(self, name)!r}: {problem}")
        if self.visibility_timeout_s <= 2 * self.hard_task_timeout_s:
            raise ConfigError(
                f"VISIBILITY_TIMEOUT={self.visibility_timeout_s!r}: must exceed twice "
                f"HARD_TASK_TIMEOUT ({self.hard_task_timeout_s:g} s), or a task still waiting "
                "in a worker's prefetch buffer is delivered twice"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("WS_TLS_CERT and WS_TLS_KEY must be given together")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Build from environment variables (``os.environ`` by default), then ``overrides``."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(env_name(f.name))
            if raw is not None and raw != "":
                values[f.name] = _parse(f.name, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    def to_env(self) -> dict[str, str]:
        """The environment that makes a child process build this same config."""
        env = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            env[env_name(f.name)] = ",".join(value) if isinstance(value, tuple) else str(value)
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


# Field name -> environment variable, where the two differ by more than upper case.
_ENV_NAMES = {
    "soft_task_timeout_s": "SOFT_TASK_TIMEOUT",
    "hard_task_timeout_s": "HARD_TASK_TIMEOUT",
    "result_expires_s": "RESULT_EXPIRES",
    "visibility_timeout_s": "VISIBILITY_TIMEOUT",
    "ping_interval_s": "WS_PING_INTERVAL",
    "ping_timeout_s": "WS_PING_TIMEOUT",
    "max_message_bytes": "WS_MAX_MESSAGE_BYTES",
    "max_tasks_in_flight": "WS_MAX_TASKS_IN_FLIGHT",
    "rate_limit_per_s": "WS_RATE_LIMIT",
    "rate_limit_burst": "WS_RATE_BURST",
    "max_connections": "WS_MAX_CONNECTIONS",
    "token": "WS_TOKEN",
    "allowed_origins": "WS_ALLOWED_ORIGINS",
    "tls_cert": "WS_TLS_CERT",
    "tls_key": "WS_TLS_KEY",
    "data_dir": "FACTORIAL_WS_DATA_DIR",
    "soft_concurrency": "SOFT_CONCURRENCY",
    "hard_concurrency": "HARD_CONCURRENCY",
}


def env_name(field_name: str) -> str:
    return _ENV_NAMES.get(field_name, field_name.upper())


def _parse(name: str, raw: str) -> Any:
    kind = {f.name: f.type for f in dataclasses.fields(Config)}[name]
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind in ("Path", "Path | None"):
            return Path(raw)
        if kind == "tuple[str, ...]":
            return tuple(item.strip() for item in raw.split(",") if item.strip())
    except ValueError:
        raise ConfigError(f"{env_name(name)}={raw!r}: expected {kind}") from None
    return raw


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be positive"


def _not_negative(value: int) -> str | None:
    return None if value >= 0 else "must be 0 or more"


def _port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else "must be a TCP port (0-65535)"


def _redis_url(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in ("redis", "rediss", "unix"):
        return "must be a redis://, rediss:// or unix:// URL"
    return None if parts.hostname or parts.scheme == "unix" else "has no host"


def _one_of(*allowed: str) -> Callable[[str], str | None]:
    return lambda value: None if value in allowed else f"must be one of {', '.join(allowed)}"


def _existing_file(value: Path | None) -> str | None:
    return None if value is None or value.is_file() else "no such file"


_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "redis_url": _redis_url,
    "ws_port": _port,
    "ws_processes": _not_negative,
    "soft_task_timeout_s": _positive,
    "hard_task_timeout_s": _positive,
    "result_expires_s": _positive,
    "ping_interval_s": _positive,
    "ping_timeout_s": _positive,
    "max_number": _positive,
    "max_task_attempts": _positive,
    "max_message_bytes": _positive,
    "max_tasks_in_flight": _positive,
    "rate_limit_per_s": _positive,
    "rate_limit_burst": _positive,
    "max_connections": _positive,
    "soft_concurrency": _positive,
    "hard_concurrency": _positive,
    "tls_cert": _existing_file,
    "tls_key": _existing_file,
    "log_level": _one_of("DEBUG", "INFO", "WARNING", "ERROR"),
    "log_format": _one_of("text", "json"),
}
