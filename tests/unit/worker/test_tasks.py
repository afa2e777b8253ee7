"""The factorial function and the two registered tasks (run in-process)."""

from __future__ import annotations

import math

import pytest
from celery import Celery

from factorial_ws.config import Config
from factorial_ws.constants import HARD_QUEUE, HARD_TASK_NAME, SOFT_QUEUE, SOFT_TASK_NAME
from factorial_ws.worker.app import create_app
from factorial_ws.worker.tasks import factorial_digits


def test_factorial_of_zero_is_one() -> None:
    assert factorial_digits(0) == "1"


def test_small_factorials_are_the_known_values() -> None:
    assert [factorial_digits(n) for n in (1, 2, 5, 20)] == ["1", "2", "120", "2432902008176640000"]


def test_factorials_match_pythons_exact_ones_up_to_a_few_thousand() -> None:
    for number in [*range(0, 300), 999, 1000, 1001, 1754, 2999, 3000]:
        assert factorial_digits(number) == str(math.factorial(number)), number


def test_factorial_past_pythons_4300_digit_str_limit_is_exact() -> None:
    digits = factorial_digits(1600)  # 4437 digits: str() refuses it under the default limit
    assert len(digits) > 4300
    assert digits == str(math.factorial(1600))


def test_factorial_of_100000_has_456574_digits() -> None:
    digits = factorial_digits(100_000)
    assert len(digits) == 456_574
    assert digits.startswith("282422940796034787429342157802453551847749492609122485057891")
    assert digits.endswith("0" * 24_999) and digits[-25_000] != "0"  # 24999 factors of 5


def test_negative_number_is_refused() -> None:
    with pytest.raises(ValueError):
        factorial_digits(-1)


# --- the registered tasks -------------------------------------------------------------------


@pytest.fixture
def app() -> Celery:
    return create_app(Config(soft_task_timeout_s=3.5, hard_task_timeout_s=7.0, max_number=5000))


def test_task_names_route_to_their_queues(app: Celery) -> None:
    router = app.amqp.router
    assert router.route({}, SOFT_TASK_NAME, args=(5,))["queue"].name == SOFT_QUEUE
    assert router.route({}, HARD_TASK_NAME, args=(5000,))["queue"].name == HARD_QUEUE


def test_registered_tasks_have_the_configured_time_limits(app: Celery) -> None:
    assert app.tasks[SOFT_TASK_NAME].time_limit == 3.5
    assert app.tasks[HARD_TASK_NAME].time_limit == 7.0


def test_tasks_acknowledge_late_so_a_lost_worker_means_redelivery(app: Celery) -> None:
    assert app.tasks[SOFT_TASK_NAME].acks_late and app.tasks[HARD_TASK_NAME].acks_late
    assert app.conf.task_reject_on_worker_lost is True


def test_tasks_return_the_digits_as_a_string(app: Celery) -> None:
    assert app.tasks[SOFT_TASK_NAME](5) == "120"
    assert app.tasks[HARD_TASK_NAME](1001) == str(math.factorial(1001))


@pytest.mark.parametrize("number", [-1, 5001])
def test_tasks_refuse_numbers_outside_the_allowed_range(app: Celery, number: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        app.tasks[HARD_TASK_NAME](number)
