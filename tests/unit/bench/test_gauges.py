"""What the bench reads of the gateway's /metrics, without a gateway."""

from __future__ import annotations

from factorial_ws.bench.gauges import submitted_to

METRICS = """\
# HELP factorial_ws_tasks_submitted_total Tasks sent to Celery, by queue.
# TYPE factorial_ws_tasks_submitted_total counter
factorial_ws_tasks_submitted_total{queue="soft"} 7.0
factorial_ws_tasks_submitted_total{queue="wordcount"} 3.0
# HELP factorial_ws_tasks_reused_total Requests answered by the task of the same number.
# TYPE factorial_ws_tasks_reused_total counter
factorial_ws_tasks_reused_total{queue="soft"} 100.0
"""

# The same counter labelled by task name too, as a catalog's metrics may be.
BY_TASK = """\
# TYPE factorial_ws_tasks_submitted_total counter
factorial_ws_tasks_submitted_total{queue="wordcount",task="count_words"} 3.0
factorial_ws_tasks_submitted_total{queue="wordcount",task="explode"} 2.0
factorial_ws_tasks_submitted_total{queue="soft",task="factorial"} 7.0
"""


def test_the_tasks_sent_to_a_queue_are_read_from_the_metrics() -> None:
    assert submitted_to(METRICS, "soft") == 7
    assert submitted_to(METRICS, "wordcount") == 3
    assert submitted_to(METRICS, "hard") == 0  # none sent yet: no line


def test_the_tasks_sent_to_a_queue_are_summed_over_other_labels() -> None:
    assert submitted_to(BY_TASK, "wordcount") == 5
    assert submitted_to(BY_TASK, "soft") == 7
