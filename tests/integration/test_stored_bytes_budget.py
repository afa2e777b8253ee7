"""What one client address makes Redis store is bounded: the bytes of the results its tasks
stored, each counted over its retention (RESULT_EXPIRES), up to STORED_BYTES_PER_CLIENT; past it
that address alone is refused new computations, while any other address is served.

The attack it stops: one connection, never more than 8 unfinished, asking for distinct numbers
20000, 20001, ... stored about 80 results a second (77 KB each), each kept an hour, until Redis
was full."""

from __future__ import annotations

from factorial_ws.constants import CLIENT_STORED_TOO_MUCH
from peers import client
from support import Launcher

from .test_admission import address


async def test_an_address_that_stored_its_budget_is_refused_while_another_is_served(
    launch: Launcher,
) -> None:
    system = launch.system(STORED_BYTES_PER_CLIENT=400_000)  # about 5 results of 20000! (77338 digits)
    results, refusals = 0, 0
    async with client(system.url, **address(2)) as ws:
        for number in range(20_000, 20_030):
            ack = await ws.request({"type": "factorial", "number": number, "id": number})
            if ack["type"] == "error":
                assert ack == {"type": "error", "result": CLIENT_STORED_TOO_MUCH, "id": number}
                refusals += 1
                continue
            done = await ws.recv(keep_ints_as_text=True)
            assert done["type"] == "success", done
            results += 1
    print(f"30 distinct numbers from 20000: {results} results, then {refusals} refusals")
    assert 5 <= results <= 7 and refusals == 30 - results
    # Another address is served, and what is stored already stays readable by anyone.
    async with client(system.url, **address(3)) as other:
        _, done = await other.factorial(20_100)
        assert done["type"] == "success"
        _, reused = await other.factorial(20_000)
        assert reused["type"] == "success"
