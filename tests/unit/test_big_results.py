"""Large results without json.loads: the note a worker publishes, the digits found in place, and
the reply streamed in fragments that read exactly as the one-frame reply."""

from __future__ import annotations

import json

import pytest

from factorial_ws.gateway.big_results import FRAGMENT_BYTES, big_result
from factorial_ws.protocol import success
from factorial_ws.worker.result_backend import NOTE_INLINE_MAX_BYTES, note_for, stored_size

DIGITS = "93326215443944152681" * 10_000  # 200000 digits: several fragments


def celery_meta(status: str, result: object) -> bytes:
    """A meta as Celery's JSON result backend writes it."""
    meta = {"status": status, "result": result, "traceback": None, "children": [], "task_id": "t"}
    return json.dumps(meta).encode()


def test_small_meta_travels_whole_in_the_note_and_a_large_one_by_its_size() -> None:
    small = celery_meta("SUCCESS", "120")
    assert note_for(small) == small and stored_size(small) is None
    large = celery_meta("SUCCESS", DIGITS)
    assert len(large) > NOTE_INLINE_MAX_BYTES
    note = note_for(large)
    assert len(note) < 40 and stored_size(note) == len(large)


@pytest.mark.parametrize("request_id", [None, 7, "row-7", 'quote " and \u00e9'])
def test_streamed_reply_is_byte_for_byte_the_one_frame_reply(request_id: int | str | None) -> None:
    result = big_result(celery_meta("SUCCESS", DIGITS))
    assert result is not None
    fragments = [bytes(fragment) for fragment in result.reply("t-1", request_id)]
    assert max(len(fragment) for fragment in fragments) == FRAGMENT_BYTES
    assert b"".join(fragments) == success("t-1", DIGITS, request_id).encode()


@pytest.mark.parametrize(
    "meta",
    [
        celery_meta("FAILURE", {"exc_type": "ValueError", "exc_message": ["x"]}),
        celery_meta("SUCCESS", "12x3"),
        celery_meta("SUCCESS", ""),
        celery_meta("SUCCESS", 120),
        b'{"result": "120", "status": "SUCCESS"}',  # another layout: parsed as JSON instead
    ],
)
def test_anything_but_a_success_of_digits_is_left_to_the_json_reader(meta: bytes) -> None:
    assert big_result(meta) is None
