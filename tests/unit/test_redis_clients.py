"""Redis Sentinel settings and the one place every Redis client is built from them."""

from __future__ import annotations

import pytest

from factorial_ws.config import Config, ConfigError
from factorial_ws.redis_clients import safe_url, sentinel_nodes
from factorial_ws.worker.app import celery_settings

SENTINELS = "sentinel://10.0.0.1:26379;sentinel://10.0.0.2:26380;sentinel://10.0.0.3/0"


def test_sentinel_url_with_a_master_name_is_accepted() -> None:
    config = Config.from_env({"REDIS_URL": SENTINELS, "REDIS_SENTINEL_MASTER": "factorial"})
    assert config.redis_url == SENTINELS
    assert config.redis_sentinel_master == "factorial"


def test_sentinel_url_without_a_master_name_is_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="REDIS_SENTINEL_MASTER"):
        Config.from_env({"REDIS_URL": SENTINELS})


@pytest.mark.parametrize(
    "url",
    [
        "sentinel://10.0.0.1:26379;redis://10.0.0.2:6379/0",  # one scheme for every node
        "sentinel://:26379",  # no host
        "sentinel://10.0.0.1:26379;",  # an empty node
        "redis://10.0.0.1:6379/0;redis://10.0.0.2:6379/0",  # only Sentinel has several nodes
    ],
)
def test_malformed_node_lists_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match=r"^REDIS_URL="):
        Config.from_env({"REDIS_URL": url, "REDIS_SENTINEL_MASTER": "m"})


def test_sentinel_nodes_are_every_host_and_port_of_the_url() -> None:
    assert sentinel_nodes(SENTINELS) == [("10.0.0.1", 26379), ("10.0.0.2", 26380), ("10.0.0.3", 26379)]


def test_celery_follows_the_master_through_sentinel_in_broker_and_result_backend() -> None:
    config = Config(redis_url=SENTINELS, redis_sentinel_master="factorial", redis_sentinel_password="s3")
    settings = celery_settings(config)
    assert settings["broker_url"] == settings["result_backend"] == SENTINELS
    for options in (settings["broker_transport_options"], settings["result_backend_transport_options"]):
        assert options["master_name"] == "factorial"
        assert options["sentinel_kwargs"]["password"] == "s3"
    # the transport's own options are kept beside Sentinel's
    assert settings["broker_transport_options"]["visibility_timeout"] == config.visibility_timeout_s


def test_plain_redis_url_has_no_sentinel_options() -> None:
    settings = celery_settings(Config())
    assert "master_name" not in settings["broker_transport_options"]
    assert "result_backend_transport_options" not in settings


def test_no_password_of_any_sentinel_node_reaches_a_log_line() -> None:
    url = "sentinel://:p4ss@10.0.0.1:26379;sentinel://:p4ss@10.0.0.2:26379/0"
    assert safe_url(url) == "sentinel://***@10.0.0.1:26379;sentinel://***@10.0.0.2:26379/0"
    assert safe_url("redis://:p4ss@127.0.0.1:6379/0") == "redis://***@127.0.0.1:6379/0"
    assert safe_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
