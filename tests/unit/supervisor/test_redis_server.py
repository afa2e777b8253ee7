"""The private Redis's command line."""

from __future__ import annotations

from pathlib import Path

from factorial_ws.supervisor.redis_server import RedisServer


def test_private_redis_with_a_password_requires_it(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, port=6390, password="p@ss/w:rd")
    command = server.command()
    assert command[command.index("--requirepass") + 1] == "p@ss/w:rd"
    assert server.url == "redis://:p%40ss%2Fw%3Ard@127.0.0.1:6390/0"
