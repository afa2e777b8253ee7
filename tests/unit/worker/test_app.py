"""The Celery app and its settings, shared by gateway, workers and bench: Redis for broker and
results, JSON only, late acknowledgement, how soon a lost task comes back, TLS."""

from __future__ import annotations

import ssl
from typing import Any

import pytest
from kombu.transport import TRANSPORT_ALIASES
from kombu.utils.url import url_to_parts
from redis.connection import UnixDomainSocketConnection

from factorial_ws.config import Config
from factorial_ws.constants import HARD_TASK_NAME
from factorial_ws.worker.app import celery_settings, create_app
from factorial_ws.worker.processes import WORKER_APP
from factorial_ws.worker.transport import SentinelTransport, Transport, celery_redis_url
from support import printed_by_fresh_interpreters

# `celery -A factorial_ws.worker`: for a package, Celery's find_app loads `<package>.celery`.
FINDS_THE_WORKERS_APP = (
    f"from celery.app.utils import find_app; app = find_app({WORKER_APP!r}); "
    "import factorial_ws.worker.celery as worker; "
    f"print(app is worker.app, {HARD_TASK_NAME!r} in app.tasks)"
)
LOADS_NO_WORKER_HOOKS = (
    "import sys, factorial_ws.gateway.server, factorial_ws.worker.app; "
    "print([name for name in ('factorial_ws.worker.celery', 'factorial_ws.worker.hooks') "
    "if name in sys.modules])"
)


@pytest.fixture(scope="module")
def printed() -> dict[str, list[str]]:
    """What each probe of this module prints, run side by side."""
    probes = [FINDS_THE_WORKERS_APP, LOADS_NO_WORKER_HOOKS]
    return dict(zip(probes, printed_by_fresh_interpreters(*probes), strict=True))


def test_the_worker_command_finds_the_workers_app_in_the_package(printed: dict[str, list[str]]) -> None:
    assert printed[FINDS_THE_WORKERS_APP] == ["True", "True"]


def test_the_gateway_builds_its_celery_app_without_loading_the_worker_hooks(
    printed: dict[str, list[str]],
) -> None:
    assert printed[LOADS_NO_WORKER_HOOKS] == ["[]"]


@pytest.mark.parametrize(
    ("visibility_timeout_s", "sweep_s"),
    [(5, 1), (7, 1), (30, 3), (300, 10), (3600, 10)],
)
def test_workers_sweep_for_lost_tasks_every_tenth_of_the_visibility_timeout_between_1_and_10_s(
    visibility_timeout_s: int, sweep_s: int
) -> None:
    config = Config(hard_task_timeout_s=1, visibility_timeout_s=visibility_timeout_s)
    options = celery_settings(config)["broker_transport_options"]
    assert options["visibility_timeout"] == visibility_timeout_s
    # kombu sweeps every interval * throttle seconds (100 s by default).
    assert options["unacked_restore_interval"] * options["unacked_restore_throttle"] == sweep_s
    # A sweep holds a lock in Redis; a worker killed in the middle of one (SIGKILL, the OOM
    # killer) must not stop the others' sweeps for kombu's default 300 s.
    assert options["unacked_mutex_expire"] == sweep_s


def test_settings_use_redis_for_broker_and_results_and_json_only() -> None:
    settings = celery_settings(Config(redis_url="redis://h:1/2", result_expires_s=60))
    assert settings["broker_url"] == settings["result_backend"] == "redis://h:1/2"
    assert settings["result_expires"] == 60
    assert settings["accept_content"] == ["json"]
    assert settings["task_serializer"] == settings["result_serializer"] == "json"


def test_visibility_timeout_is_passed_to_the_redis_transport() -> None:
    settings = celery_settings(Config(visibility_timeout_s=999))
    assert settings["broker_transport_options"]["visibility_timeout"] == 999


def test_workers_prefetch_one_task_at_a_time() -> None:
    # A prefetched task waits behind a long one; with acks_late it is also counted against
    # the visibility timeout, so keep the buffer minimal.
    assert celery_settings(Config())["worker_prefetch_multiplier"] == 1


def test_each_app_runs_its_tasks_with_its_own_config() -> None:
    # Celery's shared tasks would register the first app's closures into every later app.
    first = create_app(Config(max_number=10, hard_task_timeout_s=3.0))
    second = create_app(Config(max_number=5000, hard_task_timeout_s=7.0))
    assert second.tasks[HARD_TASK_NAME](100).startswith("93326215443944")
    assert second.tasks[HARD_TASK_NAME].time_limit == 7.0
    assert first.tasks[HARD_TASK_NAME].time_limit == 3.0
    with pytest.raises(ValueError, match="out of range"):
        first.tasks[HARD_TASK_NAME](100)


def test_a_task_that_fails_or_times_out_is_acknowledged_not_redelivered() -> None:
    # With acks_late, a task killed by its time limit would otherwise go back to the queue and
    # be killed again, forever.
    assert create_app(Config()).conf.task_acks_on_failure_or_timeout is True


# --- Redis over TLS -------------------------------------------------------------------------


def test_plain_redis_url_has_no_tls_settings() -> None:
    settings = celery_settings(Config(redis_url="redis://:pw@127.0.0.1:6379/0"))
    assert "broker_use_ssl" not in settings and "redis_backend_use_ssl" not in settings


def test_rediss_url_without_options_verifies_the_server_certificate() -> None:
    # Left alone, kombu would connect without checking the certificate (with a warning),
    # and Celery's result backend would refuse to start.
    settings = celery_settings(Config(redis_url="rediss://:pw@redis.example:6380/0"))
    assert settings["broker_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert settings["redis_backend_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED}


def test_rediss_url_with_its_own_tls_options_is_left_to_them() -> None:
    url = "rediss://redis.example:6380/0?ssl_cert_reqs=required&ssl_ca_certs=%2Fetc%2Fca.pem"
    settings = celery_settings(Config(redis_url=url))
    assert "broker_use_ssl" not in settings and "redis_backend_use_ssl" not in settings


# --- one REDIS_URL, as kombu and the result backend read it ----------------------------------


@pytest.mark.parametrize(
    "url", ["redis://localhost:6379/0", "redis://:pw@h:1/2", "rediss://h:6380/0?ssl_cert_reqs=required"]
)
def test_tcp_urls_are_passed_to_celery_as_they_are(url: str) -> None:
    assert celery_redis_url(url) == url


def test_a_unix_url_becomes_kombus_redis_socket_url_with_the_db_as_virtual_host() -> None:
    assert celery_redis_url("unix:///run/redis.sock?db=3") == "redis+socket:///run/redis.sock?virtual_host=3"
    assert celery_redis_url("unix:///run/redis.sock") == "redis+socket:///run/redis.sock"


def test_broker_and_result_backend_read_the_socket_path_password_and_db() -> None:
    app = create_app(Config(redis_url="unix://:s3cret@/run/redis.sock?db=3"))
    hostname = app.connection().hostname  # kombu hands "socket://…" to its transport
    assert hostname is not None
    broker = url_to_parts(hostname)
    assert (broker.scheme, broker.path, broker.password) == ("socket", "run/redis.sock", "s3cret")
    assert broker.query == {"virtual_host": "3"}
    redis_backend: Any = app.backend  # a RedisBackend, which celery-types does not describe
    backend = redis_backend.connparams
    assert backend["connection_class"] is UnixDomainSocketConnection
    assert (backend["path"], backend["password"], backend["db"]) == ("/run/redis.sock", "s3cret", 3)


KOMBUS_TRANSPORTS = {
    "redis": "kombu.transport.redis:Transport",
    "rediss": "kombu.transport.redis:Transport",
    "sentinel": "kombu.transport.redis:SentinelTransport",
}


@pytest.mark.parametrize(
    ("redis_url", "transport"),
    [
        ("redis://h:1/0", Transport),
        ("rediss://h:1/0", Transport),
        ("unix:///run/redis.sock", Transport),
        ("sentinel://h:26379/0", SentinelTransport),
    ],
)
def test_building_the_app_puts_our_transports_behind_its_broker_url(
    redis_url: str, transport: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    # kombu's own, as in a process that has built no app yet
    for scheme, kombus in KOMBUS_TRANSPORTS.items():
        monkeypatch.setitem(TRANSPORT_ALIASES, scheme, kombus)
    app = create_app(Config(redis_url=redis_url, redis_sentinel_master="m"))
    assert type(app.connection().transport) is transport
