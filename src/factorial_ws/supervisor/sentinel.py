"""A replicated Redis on one machine: a master, its replicas and three Sentinels, all real
``redis-server`` processes. `factorial-ws up --replicas N` runs one; so do the failover tests.

The group keeps its layout in its data folder: the ports it chose (``group.json``), each
server's configuration file and each Sentinel's. Sentinel rewrites those files whenever it
promotes a replica or turns a server into a replica, so a group started again on the same
folder resumes with the master the Sentinels last chose, not the first server's old data.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import redis

from ..config import Config
from .probes import free_port
from .processes import ChildExited, start_child, stop_child, wait_until
from .redis_server import RedisServer, RedisServerError, find_redis_server

logger = logging.getLogger(__name__)

DEFAULT_MASTER_NAME = "factorial-ws"
_HOST = "127.0.0.1"
_READY_TIMEOUT_S = 30.0
_LAYOUT_FILE = "group.json"


@dataclass(frozen=True)
class Timing:
    """How fast the Sentinels act. ``down_after_ms``: a master silent this long is down (then
    a failover starts once a quorum agrees); ``failover_timeout_ms``: how long one failover may
    take before another Sentinel tries again."""

    down_after_ms: int = 5000
    failover_timeout_ms: int = 10000


class SentinelServer:
    """One Redis Sentinel (``redis-server sentinel.conf --sentinel``) watching the master."""

    def __init__(self, data_dir: Path, port: int, *, password: str | None = None) -> None:
        self.data_dir = data_dir
        self.port = port
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def config_file(self) -> Path:
        return self.data_dir / "sentinel.conf"

    def write_config(
        self, master_name: str, master_port: int, quorum: int, timing: Timing, auth: str | None
    ) -> None:
        """The first configuration; Sentinel owns the file from then on (it must be writable)."""
        name = master_name
        lines = [
            f"port {self.port}",
            f"bind {_HOST}",
            f'dir "{self.data_dir.resolve()}"',
            'logfile "sentinel.log"',
            f"sentinel monitor {name} {_HOST} {master_port} {quorum}",
            f"sentinel down-after-milliseconds {name} {timing.down_after_ms}",
            f"sentinel failover-timeout {name} {timing.failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 1",
        ]
        if auth:
            lines.append(f"sentinel auth-pass {name} {auth}")
        if self.password:  # this Sentinel's own password, which the others use too
            lines += [f"requirepass {self.password}", f"sentinel sentinel-pass {self.password}"]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text("\n".join(lines) + "\n")

    def client(self) -> redis.Redis:
        return redis.Redis(
            _HOST, self.port, password=self.password, socket_timeout=1, socket_connect_timeout=1
        )

    def start(self) -> SentinelServer:
        command = [find_redis_server(), str(self.config_file.resolve()), "--sentinel"]
        self.process = start_child(
            command, death_signal=signal.SIGTERM, log_path=self.data_dir / "stdout.log"
        )
        with self.client() as client:
            try:
                wait_until(lambda: _answers(client), _READY_TIMEOUT_S, "redis sentinel", watch=[self.process])
            except ChildExited:
                raise RedisServerError(f"redis sentinel exited; see {self.data_dir}/sentinel.log") from None
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            stop_child(self.process, sig=sig)


class RedisGroup:
    """A master, ``replicas`` replicas and ``sentinels`` Sentinels on loopback ports.

    ``url`` is the ``sentinel://`` URL of the group and ``config_for`` points a Config at it;
    ``master()`` is the server the Sentinels name as master now.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        replicas: int = 1,
        sentinels: int = 3,
        master_name: str = DEFAULT_MASTER_NAME,
        password: str | None = None,
        sentinel_password: str | None = None,
        timing: Timing = Timing(),
        persistent: bool = True,
    ) -> None:
        self.data_dir = data_dir
        self.master_name = master_name
        self.password = password
        self.sentinel_password = sentinel_password
        self.timing = timing
        self.persistent = persistent
        self._replicas = replicas
        self._sentinel_count = sentinels
        self.servers: list[RedisServer] = []
        self.sentinels: list[SentinelServer] = []
        self._dead_since: dict[int, float] = {}  # port of an exited server -> when first seen

    # --- where it is ---

    @property
    def url(self) -> str:
        credentials = f":{quote(self.password, safe='')}@" if self.password else ""
        # Credentials and database on every node: kombu reads them from the node it uses.
        return ";".join(f"sentinel://{credentials}{_HOST}:{s.port}/0" for s in self.sentinels)

    def config_for(self, config: Config) -> Config:
        return config.replace(
            redis_url=self.url,
            redis_sentinel_master=self.master_name,
            redis_sentinel_password=self.sentinel_password,
        )

    def master(self) -> RedisServer:
        """The server the Sentinels name as master now."""
        for sentinel in self.sentinels:
            with sentinel.client() as client:
                try:
                    address = client.sentinel_get_master_addr_by_name(self.master_name)
                except redis.RedisError:
                    continue
            if address:
                port = int(address[1])
                return next(server for server in self.servers if server.port == port)
        raise RedisServerError("no Sentinel names a master")

    def processes(self) -> list[subprocess.Popen[bytes]]:
        members: list[RedisServer | SentinelServer] = [*self.servers, *self.sentinels]
        return [member.process for member in members if member.process is not None]

    # --- running it ---

    def start(self) -> RedisGroup:
        layout = self._layout()
        self.servers = [
            RedisServer(
                self.data_dir / f"redis-{index}",
                port=port,
                password=self.password,
                persistent=self.persistent,
                config_file=self.data_dir / f"redis-{index}" / "redis.conf",
            )
            for index, port in enumerate(layout["servers"])
        ]
        self.sentinels = [
            SentinelServer(self.data_dir / f"sentinel-{index}", port, password=self.sentinel_password)
            for index, port in enumerate(layout["sentinels"])
        ]
        for server in self.servers:
            server.start()
        wait_until(self._replicas_linked, _READY_TIMEOUT_S, "the replicas to sync with the master")
        for sentinel in self.sentinels:
            sentinel.start()
        wait_until(self._sentinels_agree, _READY_TIMEOUT_S, "the Sentinels to find each other")
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        for sentinel in self.sentinels:
            sentinel.stop(sig)
        for server in self.servers:
            server.stop(sig)

    def restart_exited(self) -> list[str]:
        """Start again each member that has exited; returns their names.

        A master is started again only once the Sentinels have promoted a replica (they then
        make it a replica of the new master, which it copies in full): started at once, it
        would come back as the master with only what its append-only file kept, and its
        replicas would copy that. Should no failover happen in time, it is started anyway.
        """
        restarted = []
        members: list[RedisServer | SentinelServer] = [*self.servers, *self.sentinels]
        for member in members:
            if member.process is None or member.process.poll() is None:
                continue
            if isinstance(member, RedisServer) and not self._may_restart(member):
                continue
            code = member.process.returncode
            logger.warning("%s exited (code %s); restarting it", member.data_dir.name, code)
            self._dead_since.pop(member.port, None)
            member.start()
            restarted.append(member.data_dir.name)
        return restarted

    def _may_restart(self, server: RedisServer) -> bool:
        dead_since = self._dead_since.setdefault(server.port, time.monotonic())
        failover_s = (self.timing.down_after_ms + self.timing.failover_timeout_ms) / 1000
        if time.monotonic() - dead_since > failover_s:
            return True
        try:
            return self.master() is not server
        except RedisServerError:
            return False

    def _layout(self) -> dict[str, list[int]]:
        """The ports of an existing group, or a new group: its files written once."""
        path = self.data_dir / _LAYOUT_FILE
        if path.exists():
            layout: dict[str, list[int]] = json.loads(path.read_text())
            return layout
        layout = {
            "servers": [free_port() for _ in range(1 + self._replicas)],
            "sentinels": [free_port() for _ in range(self._sentinel_count)],
        }
        master_port = layout["servers"][0]
        for index, port in enumerate(layout["servers"]):
            lines = [] if port == master_port else [f"replicaof {_HOST} {master_port}"]
            if self.password:  # a master that is turned into a replica needs it too
                lines.append(f"masterauth {self.password}")
            folder = self.data_dir / f"redis-{index}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "redis.conf").write_text("\n".join(lines) + "\n")
        quorum = self._sentinel_count // 2 + 1
        for index, port in enumerate(layout["sentinels"]):
            sentinel = SentinelServer(
                self.data_dir / f"sentinel-{index}", port, password=self.sentinel_password
            )
            sentinel.write_config(self.master_name, master_port, quorum, self.timing, self.password)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(layout) + "\n")
        return layout

    def _replicas_linked(self) -> bool:
        linked = 0
        for server in self.servers:
            with redis.Redis.from_url(server.url, socket_timeout=1) as client:
                info = client.info("replication")
            linked += info["role"] == "slave" and info.get("master_link_status") == "up"
        return linked == len(self.servers) - 1

    def _sentinels_agree(self) -> bool:
        """Every Sentinel knows the others and the replicas: a failover can then be voted."""
        for sentinel in self.sentinels:
            with sentinel.client() as client:
                state = client.sentinel_master(self.master_name)
            if state["num-other-sentinels"] < len(self.sentinels) - 1:
                return False
            if state["num-slaves"] < len(self.servers) - 1:
                return False
        return True


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
