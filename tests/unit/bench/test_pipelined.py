"""The pipelined load's pure parts: the frames it sends, how it judges replies, and rounds."""

from __future__ import annotations

import json

import pytest

from factorial_ws.bench.pipelined import ACK, Lane, Report, ack_lane, combine, judge, lookup_lane, spread


def test_an_ack_lane_numbers_its_factorial_requests_and_expects_acks() -> None:
    lane = ack_lane(3, 5)
    assert [json.loads(frame) for frame in lane.frames] == [
        {"type": "factorial", "number": 5, "id": i} for i in range(3)
    ]
    assert lane.expected == (ACK, ACK, ACK)


def test_a_lookup_lane_asks_in_turn_from_its_offset_and_wraps_around() -> None:
    stored = [("a", 1), ("b", 2), ("c", 6)]
    lane = lookup_lane(stored, 4, offset=2)
    assert [json.loads(frame) for frame in lane.frames] == [
        {"type": "result", "task_id": task_id, "id": i} for i, task_id in enumerate("cabc")
    ]
    assert lane.expected == (6, 1, 2, 6)


def test_an_ack_is_a_result_reply_with_a_task_id_for_an_outstanding_request() -> None:
    outstanding = {0: ACK, 1: ACK}
    assert judge('{"type": "result", "task_id": "t", "id": 1}', outstanding) == (1, None)
    request_id, problem = judge('{"type": "error", "result": "Rate limit exceeded", "id": 0}', outstanding)
    assert request_id == 0 and problem == "error: Rate limit exceeded"  # a refusal ends the request


def test_a_lookup_must_bring_the_exact_result() -> None:
    outstanding = {7: 120}
    assert judge('{"type": "success", "task_id": "t", "result": 120, "id": 7}', outstanding) == (7, None)
    assert judge('{"type": "success", "task_id": "t", "result": 24, "id": 7}', outstanding) == (
        7,
        "wrong result",
    )
    assert judge('{"type": "pending", "task_id": "t", "id": 7}', outstanding)[1] is not None


@pytest.mark.parametrize(
    "reply",
    ['{"type": "result", "task_id": "t", "id": 9}', '{"type": "error", "result": "x"}', "not json", "[1]"],
)
def test_a_reply_to_no_outstanding_request_is_an_error_that_ends_none(reply: str) -> None:
    request_id, problem = judge(reply, {0: ACK})
    assert request_id is None and problem is not None


def test_a_round_spans_the_first_start_to_the_last_end_of_its_processes() -> None:
    reports = [
        Report(ok=900, errors=0, started=10.0, ended=11.0, cpu_s=0.2),
        Report(ok=1000, errors=100, started=10.5, ended=12.0, cpu_s=0.3, reasons={"wrong result": 100}),
    ]
    outcome = combine(reports, gateway_cpu_s=1.5)
    assert outcome.seconds == 2.0
    assert outcome.rate == 950.0  # right replies only
    assert (outcome.ok, outcome.errors, outcome.clients_cpu_s) == (1900, 100, 0.5)
    assert outcome.reasons == {"wrong result": 100}


def test_spread_shares_requests_over_processes_then_their_connections() -> None:
    made: list[tuple[int, int]] = []

    def lane(count: int, index: int) -> Lane:
        made.append((count, index))
        return ack_lane(count, 5)

    jobs = spread(requests=10, connections=3, processes=2, window=4, lane=lane)
    assert [[len(lane.frames) for lane in job.lanes] for job in jobs] == [[3, 2], [5]]
    assert made == [(3, 0), (2, 1), (5, 2)]  # connections are numbered across processes
    assert all(job.window == 4 for job in jobs)
