"""The settings of issue 10: reuse of results, output budgets and admission limits, parsed and
checked like every other setting."""

from __future__ import annotations

import pytest

from factorial_ws.config import Config, ConfigError


@pytest.mark.parametrize(("raw", "value"), [("0", False), ("1", True), ("false", False), ("True", True)])
def test_result_reuse_reads_as_a_switch(raw: str, value: bool) -> None:
    assert Config.from_env({"RESULT_REUSE": raw}).result_reuse is value


def test_result_reuse_refuses_anything_else_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="RESULT_REUSE='maybe': expected 1 or 0"):
        Config.from_env({"RESULT_REUSE": "maybe"})


def test_a_switch_survives_the_round_trip_through_a_child_environment() -> None:
    config = Config(result_reuse=False)
    assert config.to_env()["RESULT_REUSE"] == "0"
    assert Config.from_env(config.to_env()) == config
