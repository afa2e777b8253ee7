"""docs/deployment.md says which Redis settings `up` gives its private Redis: hold it to the
command line `up` actually starts Redis with."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

from factorial_ws.supervisor.redis_server import RedisServer

DEPLOYMENT = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"


def redis_settings_rows() -> list[tuple[str, str]]:
    """(setting, the `up` column) of the Redis settings table."""
    rows = []
    for line in DEPLOYMENT.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`") and cells[3] != "`up`'s private Redis":
            rows.append((re.findall(r"`([^`]+)`", cells[0])[0], cells[3]))
    return rows


def test_the_deployment_doc_says_which_settings_up_gives_its_private_redis(tmp_path: Path) -> None:
    command = RedisServer(tmp_path).command()  # as `up` creates it: no password
    options = {arg[2:]: value for arg, value in itertools.pairwise(command[1:]) if arg.startswith("--")}
    rows = redis_settings_rows()
    assert {name for name, _ in rows} >= {"maxmemory-policy", "maxmemory", "appendonly", "requirepass"}
    for name, up_column in rows:
        if up_column.startswith("set:"):
            value = re.findall(r"`([^`]*)`", up_column)[0]
            assert options.get(name) == value.strip('"'), (name, up_column, options)
        else:
            assert up_column.startswith("not set"), (name, up_column)
            assert name not in options, (name, up_column, options)
    assert not any(option.startswith("tls") for option in options)
