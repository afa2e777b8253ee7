"""The settings of issue 10 and 17: reuse of results, output budgets and admission budgets (in the
cost of a task, the digits of n!), parsed and checked like every other setting."""

from __future__ import annotations

import json
import math

import pytest

from factorial_ws.config import Config, ConfigError
from factorial_ws.constants import TASK_REVOKED, TIMEOUT_ERROR
from factorial_ws.costs import factorial_cost
from factorial_ws.protocol import Failure
from factorial_ws.worker.stored_meta import outcome_from_meta


@pytest.mark.parametrize(("raw", "value"), [("0", False), ("1", True), ("false", False), ("True", True)])
def test_result_reuse_reads_as_a_switch(raw: str, value: bool) -> None:
    assert Config.from_env({"RESULT_REUSE": raw}).result_reuse is value


def test_result_reuse_refuses_anything_else_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="RESULT_REUSE=maybe: expected 1 or 0"):
        Config.from_env({"RESULT_REUSE": "maybe"})


def test_a_switch_survives_the_round_trip_through_a_child_environment() -> None:
    config = Config(result_reuse=False)
    assert config.to_env()["RESULT_REUSE"] == "0"
    assert Config.from_env(config.to_env()) == config


def test_defaults_of_the_admission_budgets() -> None:
    config = Config()
    # 25 numbers near a million per hard worker process; about 8 of them per address.
    assert config.hard_queue_max_digits == 2 * 25 * factorial_cost(1_000_000)
    assert config.hard_queue_digits_per_client == 45_000_000
    assert config.stored_bytes_per_client == 256 * 1024 * 1024  # a quarter of REDIS_MAXMEMORY
    assert config.task_expires_s == 600  # twice VISIBILITY_TIMEOUT's default
    assert config.max_output_bytes == 16 * 1024 * 1024 and config.slow_consumer_timeout_s == 30


def test_derived_limits_follow_what_they_derive_from() -> None:
    assert Config(hard_concurrency=4).hard_queue_max_digits == 4 * 25 * factorial_cost(1_000_000)
    assert Config(redis_maxmemory="100mb").stored_bytes_per_client == 25 * 1024 * 1024
    # A longer hard limit lengthens the visibility timeout, and the expiry with it.
    assert Config(hard_task_timeout_s=300).task_expires_s == 2 * (2 * 300 + 60)
    assert Config(task_expires_s=30).task_expires_s == 30


@pytest.mark.parametrize(
    "variable", ["HARD_QUEUE_MAX_DIGITS", "HARD_QUEUE_DIGITS_PER_CLIENT", "STORED_BYTES_PER_CLIENT"]
)
def test_zero_turns_a_budget_off_and_a_negative_one_is_refused(variable: str) -> None:
    Config.from_env({variable: "0"})
    with pytest.raises(ConfigError, match=f"{variable}=-1"):
        Config.from_env({variable: "-1"})


@pytest.mark.parametrize(
    ("variable", "successor"),
    [
        ("HARD_QUEUE_LIMIT", "HARD_QUEUE_MAX_DIGITS"),
        ("HARD_TASKS_PER_CLIENT", "HARD_QUEUE_DIGITS_PER_CLIENT"),
    ],
)
def test_a_retired_task_count_limit_stops_the_process_naming_its_successor(
    variable: str, successor: str
) -> None:
    with pytest.raises(ConfigError, match=f"{variable} is retired: .* use {successor}"):
        Config.from_env({variable: "8"})


@pytest.mark.parametrize(
    ("number", "digits"), [(0, 1), (1, 1), (5, 3), (1000, 2568), (3000, 9131), (20_000, 77_338)]
)
def test_a_factorials_cost_is_its_digits(number: int, digits: int) -> None:
    assert factorial_cost(number) == digits == len(str(math.factorial(number)))


def test_the_cost_of_a_million_factorial_is_its_digits() -> None:
    # The published count (OEIS A034886, a(10^6)); printing the number takes a second.
    assert factorial_cost(1_000_000) == 5_565_709


def test_a_task_discarded_past_its_expiry_reads_as_a_timeout() -> None:
    expired = {"exc_type": "TaskRevokedError", "exc_message": ["expired"], "exc_module": "x"}
    revoked = {"exc_type": "TaskRevokedError", "exc_message": ["revoked"], "exc_module": "x"}
    assert outcome_from_meta(json.dumps({"status": "REVOKED", "result": expired})) == Failure(TIMEOUT_ERROR)
    assert outcome_from_meta(json.dumps({"status": "REVOKED", "result": revoked})) == Failure(TASK_REVOKED)
