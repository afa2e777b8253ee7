"""The cancel rule (issue 17, item 1.4), as a pure function: only the connection that created a
computation may revoke it, and only while nobody else waits for it; a joiner's cancel ends its
own waits; anyone else is refused."""

from __future__ import annotations

import pytest

from factorial_ws.constants import TASK_NOT_CANCELLED, TASK_NOT_YOURS
from factorial_ws.gateway.cancel import CancelAction, cancel_action


@pytest.mark.parametrize("waits_here", [True, False])
def test_the_creator_revokes_a_computation_nobody_else_waits_for(waits_here: bool) -> None:
    action = cancel_action(created=True, waits_here=waits_here, others_wait=False)
    assert action is CancelAction.REVOKE and action.refusal is None


def test_the_creator_only_stops_waiting_while_others_wait() -> None:
    assert cancel_action(created=True, waits_here=True, others_wait=True) is CancelAction.END_OWN_WAITS


def test_the_creator_with_nothing_of_its_own_to_end_is_told_others_wait() -> None:
    action = cancel_action(created=True, waits_here=False, others_wait=True)
    assert action.refusal == TASK_NOT_CANCELLED


@pytest.mark.parametrize("others_wait", [True, False])
def test_a_joiner_or_a_lookup_only_ends_its_own_waits_even_when_nobody_else_waits(others_wait: bool) -> None:
    # The creator gone and nobody else waiting: the computation still goes on, for a later lookup.
    action = cancel_action(created=False, waits_here=True, others_wait=others_wait)
    assert action is CancelAction.END_OWN_WAITS and action.refusal is None


@pytest.mark.parametrize("others_wait", [True, False])
def test_a_connection_that_neither_created_nor_waits_is_refused(others_wait: bool) -> None:
    action = cancel_action(created=False, waits_here=False, others_wait=others_wait)
    assert action.refusal == TASK_NOT_YOURS
