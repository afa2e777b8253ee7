"""Looking at processes and ports from outside: free, open and taken ports, who listens on a
port, and a process's state, CPU time, memory and command line as /proc gives them."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on the port."""
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def stat_fields(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name (which may contain spaces): state,
    ppid, ..., utime at index 11, stime at 12, starttime at 19."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int, key: str = "VmHWM") -> int:
    """A memory figure of /proc/<pid>/status in KiB (VmHWM: peak resident set)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


# --- who listens on a port ----------------------------------------------------------------------

_TCP_LISTEN = "0A"  # the state column of /proc/net/tcp


def listening_sockets(port: int) -> dict[int, str]:
    """The TCP sockets listening on ``port``, on any address, IPv4 or IPv6: inode -> local
    address (as /proc/net/tcp writes it: hex address, colon, hex port)."""
    sockets = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue  # no IPv6
        for row in rows:
            fields = row.split()  # sl, local_address, rem_address, st, ..., inode at 9
            if fields[3] == _TCP_LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                sockets[int(fields[9])] = fields[1]
    return sockets


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets the process has open (empty if it is gone or not ours to see)."""
    inodes: set[int] = set()
    try:
        descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return inodes
    for descriptor in descriptors:
        try:
            target = os.readlink(descriptor)
        except OSError:
            continue  # closed while we looked
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def listening_pids(port: int) -> set[int]:
    """The processes (those we may look into) that hold a socket listening on ``port``."""
    listening = listening_sockets(port).keys()
    if not listening:
        return set()
    pids = (int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return {pid for pid in pids if socket_inodes(pid) & listening}


def port_taken(host: str, port: int) -> bool:
    """True when a socket already listens on ``host``:``port``: a server binding there (with
    SO_REUSEADDR, on each address of ``host``, as asyncio does) would fail, or would share the
    port with that other process through SO_REUSEPORT."""
    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return False  # not ours to report: the server's own bind says what is wrong
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return True
    return False


def command_line(pid: int) -> str:
    """The process's command line, arguments separated by spaces ("" if it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").replace(b"\0", b" ").decode()
    except OSError:
        return ""
