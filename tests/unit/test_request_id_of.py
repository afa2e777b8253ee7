"""Reading only the id of a frame that is refused without being served."""

from __future__ import annotations

import pytest

from factorial_ws.protocol import RequestId, request_id_of


@pytest.mark.parametrize(
    ("frame", "request_id"),
    [
        ('{"type": "factorial", "number": 5, "id": 7}', 7),
        ('{"id": "row-1"}', "row-1"),
        (b'{"type": "result", "id": "bytes"}', "bytes"),
        ('{"type": "factorial", "number": 5}', None),
        ('{"id": 1.5}', None),
        ('{"id": ' + "9" * 40 + "}", None),
        ('{"id": "' + "x" * 129 + '"}', None),
        ("[1, 2]", None),
        ("{not json", None),
        ('{"id": NaN}', None),
        (b'{"id": "\xff"}', None),
        ("[" * 100_000, None),
    ],
)
def test_request_id_of(frame: str | bytes, request_id: RequestId | None) -> None:
    assert request_id_of(frame) == request_id
