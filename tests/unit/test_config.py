"""Settings from environment variables: parsing, validation with the variable named, round trip."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from factorial_ws.config import SETTINGS, Config, ConfigError, env_name


def test_defaults_are_the_documented_ones() -> None:
    config = Config.from_env({})
    assert config.redis_url == "redis://localhost:6379/0"
    assert (config.ws_host, config.ws_port) == ("localhost", 25000)
    assert (config.soft_task_timeout_s, config.hard_task_timeout_s) == (10.0, 60.0)
    assert config.result_expires_s == 3600
    assert config.max_number == 1_000_000
    assert config.public_url == "ws://localhost:25000/"


def test_every_variable_of_the_issue_is_read() -> None:
    config = Config.from_env(
        {
            "REDIS_URL": "redis://redis.example:6380/2",
            "WS_HOST": "0.0.0.0",
            "WS_PORT": "8080",
            "SOFT_TASK_TIMEOUT": "2.5",
            "HARD_TASK_TIMEOUT": "30",
            "RESULT_EXPIRES": "60",
            "MAX_NUMBER": "5000",
        }
    )
    assert config.redis_url == "redis://redis.example:6380/2"
    assert (config.ws_host, config.ws_port) == ("0.0.0.0", 8080)
    assert (config.soft_task_timeout_s, config.hard_task_timeout_s) == (2.5, 30.0)
    assert (config.result_expires_s, config.max_number) == (60, 5000)
    assert config.public_url == "ws://localhost:8080/"


def test_empty_variable_means_the_default() -> None:
    assert Config.from_env({"WS_PORT": "", "MAX_NUMBER": ""}) == Config()


def test_overrides_win_over_the_environment_and_none_is_no_override() -> None:
    config = Config.from_env({"WS_PORT": "1234"}, ws_port=4321, ws_host=None)
    assert (config.ws_port, config.ws_host) == (4321, "localhost")


def test_list_variable_is_split_on_commas() -> None:
    config = Config.from_env({"WS_ALLOWED_ORIGINS": "https://a.example, https://b.example,"})
    assert config.allowed_origins == ("https://a.example", "https://b.example")


def test_env_names_map_fields_to_the_documented_variables() -> None:
    assert env_name("hard_task_timeout_s") == "HARD_TASK_TIMEOUT"
    assert env_name("data_dir") == "FACTORIAL_WS_DATA_DIR"
    assert env_name("redis_url") == "REDIS_URL"


def test_every_field_is_a_setting_with_its_own_variable_parsed_as_its_type() -> None:
    assert list(SETTINGS) == [f.name for f in dataclasses.fields(Config)]
    assert len({row.env for row in SETTINGS.values()}) == len(SETTINGS)
    kinds = {name: row.kind for name, row in SETTINGS.items()}
    assert (kinds["ws_port"], kinds["hard_task_timeout_s"], kinds["token"]) == (int, float, str)
    assert (kinds["tls_cert"], kinds["data_dir"], kinds["allowed_origins"]) == (Path, Path, tuple[str, ...])


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WS_PORT", "http"),
        ("WS_PORT", "80.5"),
        ("MAX_NUMBER", "1e6"),
        ("HARD_TASK_TIMEOUT", "soon"),
        ("RESULT_EXPIRES", "1h"),
    ],
)
def test_unparsable_value_names_the_variable_and_the_expected_type(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{variable}={value}: expected (int|float)$"):
        Config.from_env({variable: value})


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("REDIS_URL", "localhost:6379", "must be a redis://, rediss:// or unix:// URL"),
        ("REDIS_URL", "http://localhost:6379/0", "must be a redis://, rediss:// or unix:// URL"),
        ("REDIS_URL", "redis://", "has no host"),
        ("WS_PORT", "70000", "must be a TCP port"),
        ("WS_PORT", "-1", "must be a TCP port"),
        ("SOFT_TASK_TIMEOUT", "0", "must be positive"),
        ("HARD_TASK_TIMEOUT", "-5", "must be positive"),
        ("RESULT_EXPIRES", "0", "must be positive"),
        ("MAX_NUMBER", "0", "must be positive"),
        ("MAX_NUMBER", "-1", "must be positive"),
        ("WS_MAX_TASKS_IN_FLIGHT", "0", "must be positive"),
        ("SOFT_CONCURRENCY", "0", "must be positive"),
        ("LOG_LEVEL", "LOUD", "must be one of"),
        ("LOG_FORMAT", "xml", "must be one of"),
        ("WS_TLS_CERT", "/nonexistent/cert.pem", "no such file"),
    ],
)
def test_invalid_value_is_refused_with_the_variable_named(variable: str, value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Config.from_env({variable: value})
    message = str(caught.value)
    assert message.startswith(f"{variable}=")
    assert problem in message


def test_visibility_timeout_must_exceed_twice_the_hard_time_limit() -> None:
    with pytest.raises(ConfigError, match=r"^VISIBILITY_TIMEOUT=300: must exceed twice HARD_TASK_TIMEOUT"):
        Config.from_env({"HARD_TASK_TIMEOUT": "150", "VISIBILITY_TIMEOUT": "300"})
    with pytest.raises(ConfigError, match=r"^VISIBILITY_TIMEOUT=600: must exceed twice HARD_TASK_TIMEOUT"):
        Config.from_env({"HARD_TASK_TIMEOUT": "300", "VISIBILITY_TIMEOUT": "600"})
    assert Config.from_env({"HARD_TASK_TIMEOUT": "149"}).hard_task_timeout_s == 149
    assert (
        Config.from_env({"HARD_TASK_TIMEOUT": "200", "VISIBILITY_TIMEOUT": "401"}).visibility_timeout_s == 401
    )


def test_a_longer_hard_timeout_alone_raises_the_default_visibility_timeout_with_it() -> None:
    # Setting only HARD_TASK_TIMEOUT must not stop every process: the default follows it.
    assert Config.from_env({"HARD_TASK_TIMEOUT": "300"}).visibility_timeout_s == 660
    assert Config.from_env({"HARD_TASK_TIMEOUT": "150"}).visibility_timeout_s == 360
    assert Config.from_env({"HARD_TASK_TIMEOUT": "120.2"}).visibility_timeout_s == 301
    assert Config.from_env({"HARD_TASK_TIMEOUT": "120"}).visibility_timeout_s == 300
    assert Config().visibility_timeout_s == 300


def test_a_derived_visibility_timeout_reaches_child_processes_and_follows_replace() -> None:
    parent = Config.from_env({"HARD_TASK_TIMEOUT": "300"})
    assert Config.from_env(parent.to_env()) == parent
    assert Config().replace(hard_task_timeout_s=300).visibility_timeout_s == 660
    assert parent.replace(hard_task_timeout_s=60) == Config()
    explicit = Config(hard_task_timeout_s=1, visibility_timeout_s=7)
    assert explicit.replace(hard_task_timeout_s=3).visibility_timeout_s == 7


def test_soft_timeout_above_the_hard_timeout_is_refused_naming_both() -> None:
    with pytest.raises(
        ConfigError, match=r"^SOFT_TASK_TIMEOUT=90.0: must not exceed HARD_TASK_TIMEOUT \(60 s\)"
    ):
        Config.from_env({"SOFT_TASK_TIMEOUT": "90"})
    with pytest.raises(
        ConfigError, match=r"^SOFT_TASK_TIMEOUT=5.0: must not exceed HARD_TASK_TIMEOUT \(3 s\)"
    ):
        Config(soft_task_timeout_s=5.0, hard_task_timeout_s=3.0)
    assert Config.from_env({"SOFT_TASK_TIMEOUT": "60"}).soft_task_timeout_s == 60


def test_a_short_hard_timeout_alone_caps_the_default_soft_timeout() -> None:
    # HARD_TASK_TIMEOUT=3 alone must start, so the soft default (10 s) gives way to it.
    config = Config.from_env({"HARD_TASK_TIMEOUT": "3"})
    assert (config.soft_task_timeout_s, config.hard_task_timeout_s) == (3.0, 3.0)
    assert Config.from_env(config.to_env()) == config
    assert config.replace(hard_task_timeout_s=60) == Config()


@pytest.mark.parametrize(("value", "level"), [("info", "INFO"), ("Warning", "WARNING"), ("DEBUG", "DEBUG")])
def test_log_level_is_accepted_in_any_case_like_the_log_level_flag(value: str, level: str) -> None:
    assert Config.from_env({"LOG_LEVEL": value}).log_level == level
    assert Config(log_level=value).log_level == level


def test_allowed_origins_are_compared_as_browsers_send_them() -> None:
    # A browser's Origin header has no trailing slash and a lower-case scheme and host.
    config = Config.from_env({"WS_ALLOWED_ORIGINS": "http://a.example/, HTTPS://B.Example:8443"})
    assert config.allowed_origins == ("http://a.example", "https://b.example:8443")
    assert Config(allowed_origins=("http://[::1]:25000/",)).allowed_origins == ("http://[::1]:25000",)
    assert Config.from_env(config.to_env()) == config


@pytest.mark.parametrize(
    "origin",
    [
        "http://a.example/app",
        "http://a.example/?x=1",
        "http://a.example#top",
        "a.example",
        "a.example:8080",
        "*",
        "null",
        "http://",
        "http://user@a.example",
        "http://a.example:99999",
    ],
)
def test_an_allowed_origin_that_is_not_scheme_host_port_is_refused(origin: str) -> None:
    with pytest.raises(ConfigError, match=r"^WS_ALLOWED_ORIGINS=.*is not an origin: scheme://host\[:port\]"):
        Config.from_env({"WS_ALLOWED_ORIGINS": f"https://ok.example,{origin}"})


def test_tls_cert_and_key_go_together(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError, match="WS_TLS_CERT and WS_TLS_KEY"):
        Config.from_env({"WS_TLS_CERT": str(cert)})


def test_to_env_builds_the_same_config_in_a_child_process(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    original = Config(
        redis_url="redis://10.0.0.1:6390/3",
        ws_host="0.0.0.0",
        ws_port=0,
        soft_task_timeout_s=1.5,
        hard_task_timeout_s=7.0,
        max_number=12345,
        token="secret",
        allowed_origins=("https://a.example", "https://b.example"),
        tls_cert=cert,
        tls_key=cert,
        log_format="json",
        data_dir=tmp_path / "data",
    )
    env = original.to_env()
    assert env["HARD_TASK_TIMEOUT"] == "7.0" and env["MAX_NUMBER"] == "12345"
    assert Config.from_env(env) == original


def test_to_env_of_the_defaults_round_trips_and_leaves_unset_options_out() -> None:
    env = Config().to_env()
    assert "WS_TOKEN" not in env and "WS_TLS_CERT" not in env
    assert Config.from_env(env) == Config()
    assert set(env) <= {env_name(f.name) for f in dataclasses.fields(Config)}


def test_config_is_immutable_and_replace_validates() -> None:
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.ws_port = 1  # type: ignore[misc]
    with pytest.raises(ConfigError, match=r"^WS_PORT="):
        config.replace(ws_port=99999)


def test_ws_processes_zero_means_one_gateway_process_per_core() -> None:
    assert Config.from_env({"WS_PROCESSES": "0"}).gateway_processes == (os.cpu_count() or 1)
    assert Config.from_env({"WS_PROCESSES": "3"}).gateway_processes == 3


def test_negative_ws_processes_is_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="WS_PROCESSES"):
        Config.from_env({"WS_PROCESSES": "-1"})


@pytest.mark.parametrize(
    ("environ", "start"),
    [
        ({"WS_TLS_CERT": "/nonexistent"}, "WS_TLS_CERT=/nonexistent: no such file"),
        ({"WS_ALLOWED_ORIGINS": "http://X.com/path"}, "WS_ALLOWED_ORIGINS=http://X.com/path: "),
        (
            {"WS_ALLOWED_ORIGINS": "https://ok.example, http://x.com/path"},
            "WS_ALLOWED_ORIGINS=https://ok.example,",
        ),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL=loud: must be one of"),
        ({"WS_PORT": "http"}, "WS_PORT=http: expected int"),
    ],
)
def test_a_refused_value_is_shown_as_the_user_wrote_it(environ: dict[str, str], start: str) -> None:
    """Not as a Python repr (``PosixPath('/nonexistent')``, ``('http://x.com/path',)``)."""
    with pytest.raises(ConfigError) as caught:
        Config.from_env(environ)
    assert str(caught.value).startswith(start), str(caught.value)


def test_a_refused_value_given_as_a_flag_is_shown_as_text() -> None:
    with pytest.raises(ConfigError) as caught:
        Config.from_env({}, tls_cert=Path("/nonexistent"), tls_key=Path("/nonexistent"))
    assert str(caught.value).startswith("WS_TLS_CERT=/nonexistent: no such file"), str(caught.value)
