"""Issue 11, items 5 and 10: hostile clients cannot hold the HTTP server, queue a valid login past a
scrape timeout, or smuggle a request inside a GET body.

Behaviour, not speed: each test asserts who gets which answer; the timeouts are generous bounds on a hang.
"""
from __future__ import annotations

import base64
import gzip
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress

import bcrypt
import pytest

from batch_exporter import web
from batch_exporter.web import AuthBusy, BasicAuth, ConnectionLimits, MetricsServer, Page
from batch_exporter.webconfig import TLSConfig, WebConfig
from tls_material import TLSMaterial, make_material, openssl_available

pytestmark = pytest.mark.timeout(120)

PASSWORD = "right horse"
PAYLOAD = b"batch_run_last_status 1\n"
CLIENT_TIMEOUT = 10  # Prometheus' default scrape timeout


class Endpoints:
    def metrics_payload(self) -> tuple[bytes, bytes]:
        return PAYLOAD, gzip.compress(PAYLOAD)

    def is_ready(self) -> bool:
        return False

    def status_page(self) -> Page:
        return Page(b"<!DOCTYPE html><title>status</title>\n", gzip.compress(b"<!DOCTYPE html><title>status</title>\n"))

    def status_json(self) -> Page:
        return Page(b"{}\n", gzip.compress(b"{}\n"))


@contextmanager
def serving(config: WebConfig | None = None, limits: ConnectionLimits | None = None) -> Iterator[MetricsServer]:
    server = MetricsServer("127.0.0.1:0", Endpoints(), config, limits=limits or ConnectionLimits())
    server.start()
    try:
        yield server
    finally:
        server.shutdown()


def authorization(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def get(port: int, password: str | None = None, *, source: str = "127.0.0.1", tls: ssl.SSLContext | None = None,
        timeout: float = CLIENT_TIMEOUT) -> tuple[int, http.client.HTTPMessage]:
    conn: http.client.HTTPConnection
    if tls is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(source, 0))
    else:
        conn = http.client.HTTPSConnection("localhost", port, timeout=timeout, context=tls)
    try:
        headers = {"Authorization": authorization("prometheus", password)} if password is not None else {}
        conn.request("GET", "/metrics", headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, response.headers
    finally:
        conn.close()


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """True when the server hangs up on `sock` within `timeout` seconds (EOF or reset)."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


@pytest.fixture(scope="module")
def password_hash() -> str:
    return bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> TLSMaterial:
    if not openssl_available():
        pytest.skip("openssl command not installed")
    return make_material(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def held_bcrypt(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """bcrypt checks block until the returned event is set (it is set at the end of the test)."""
    release = threading.Event()
    real = bcrypt.checkpw

    def held(password: bytes, hashed: bytes) -> bool:
        release.wait(60)
        return real(password, hashed)

    monkeypatch.setattr(web.bcrypt, "checkpw", held)
    yield release
    release.set()


# --- the password pool ----------------------------------------------------------------------------


def test_with_the_pool_full_a_wrong_password_is_refused_at_once(password_hash: str,
                                                                held_bcrypt: threading.Event) -> None:
    limits = ConnectionLimits(password_workers=1, password_checks=1)
    with serving(WebConfig(basic_auth_users={"prometheus": password_hash}), limits) as server:
        stuck = threading.Thread(target=get, args=(server.port, "wrong"), daemon=True)
        stuck.start()
        deadline = time.monotonic() + CLIENT_TIMEOUT
        while server._security.auth is not None and server._security.auth._checks == 0:
            assert time.monotonic() < deadline, "the first check never started"
            time.sleep(0.01)
        # Before the fix this waited behind the stuck check until the client timed out.
        status, headers = get(server.port, "also wrong", source="127.0.0.2", timeout=5)
        assert status == 503 and headers["Retry-After"] == "1"
        held_bcrypt.set()
        stuck.join(CLIENT_TIMEOUT)


def test_one_client_address_cannot_take_the_whole_pool(password_hash: str, held_bcrypt: threading.Event) -> None:
    auth = BasicAuth({"prometheus": password_hash}, workers=1, checks=8, per_client=1)
    attacker = threading.Thread(target=auth.allows, args=(authorization("prometheus", "x"), "192.0.2.1"), daemon=True)
    attacker.start()
    deadline = time.monotonic() + CLIENT_TIMEOUT
    while auth._checks == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with pytest.raises(AuthBusy) as refused:
        auth.allows(authorization("prometheus", "y"), "192.0.2.1")
    assert refused.value.status == 429
    held_bcrypt.set()
    assert auth.allows(authorization("prometheus", PASSWORD), "192.0.2.2")


def test_a_valid_first_login_is_answered_during_a_wrong_password_flood(
        password_hash: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real = bcrypt.checkpw

    def slow(password: bytes, hashed: bytes) -> bool:
        time.sleep(0.1)  # a cost-12 hash on a busy core; the test hash is cost 4
        return real(password, hashed)

    monkeypatch.setattr(web.bcrypt, "checkpw", slow)
    stop = threading.Event()
    refused: list[int] = []

    def attack() -> None:
        while not stop.is_set():
            with suppress(OSError):
                refused.append(get(server.port, "guess", source="127.0.0.2")[0])

    with serving(WebConfig(basic_auth_users={"prometheus": password_hash})) as server:
        attackers = [threading.Thread(target=attack, daemon=True) for _ in range(100)]
        for thread in attackers:
            thread.start()
        try:
            time.sleep(1)  # let the flood fill the queue; before the fix ~100 checks of 0.1 s were queued
            assert get(server.port, PASSWORD)[0] == 200
        finally:
            stop.set()
            for thread in attackers:
                thread.join(CLIENT_TIMEOUT)
    assert 401 in refused and 429 in refused


def test_accepted_logins_survive_a_reload_that_keeps_the_users(password_hash: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(password)
        return real(password, hashed)

    monkeypatch.setattr(web.bcrypt, "checkpw", counting)
    with serving(WebConfig(basic_auth_users={"prometheus": password_hash})) as server:
        assert get(server.port, PASSWORD)[0] == 200
        server.reload_web_config(WebConfig(basic_auth_users={"prometheus": password_hash},
                                           headers={"X-Frame-Options": "deny"}))
        assert get(server.port, PASSWORD)[0] == 200
        assert len(calls) == 1
        other = bcrypt.hashpw(b"other", bcrypt.gensalt(rounds=4)).decode()
        server.reload_web_config(WebConfig(basic_auth_users={"prometheus": password_hash, "grafana": other}))
        assert get(server.port, PASSWORD)[0] == 200
        assert len(calls) == 2  # new users: logins are checked again


# --- connections ----------------------------------------------------------------------------------


def test_slow_connections_beyond_the_cap_are_cut_and_a_scrape_still_gets_200() -> None:
    limits = ConnectionLimits(max_connections=8, first_request_seconds=60)
    with serving(limits=limits) as server, ExitStack() as stack:
        slow = [stack.enter_context(socket.create_connection(("127.0.0.1", server.port))) for _ in range(20)]
        for sock in slow:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        assert get(server.port)[0] == 200
        still_open = [sock for sock in slow if not closed_by_server(sock, 0.5)]
        assert len(still_open) <= limits.max_connections
        assert len(server._server.slots) <= limits.max_connections if server._server else True


def test_a_trickled_request_is_cut_at_the_first_request_deadline() -> None:
    with serving(limits=ConnectionLimits(first_request_seconds=1)) as server, \
            socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\n")
        cut = False
        give_up = time.monotonic() + CLIENT_TIMEOUT
        # A header byte every 0.2 s resets any per-read timeout; only a deadline stops it.
        while not cut and time.monotonic() < give_up:
            try:
                sock.sendall(b"X")
            except OSError:
                cut = True
                break
            cut = closed_by_server(sock, 0.2)
        assert cut


def test_slow_tls_handshakes_are_cut_and_a_tls_scrape_still_gets_200(material: TLSMaterial) -> None:
    config = WebConfig(tls=TLSConfig(cert_file=material.server_cert, key_file=material.server_key))
    trusted = ssl.create_default_context(cafile=str(material.ca_cert))
    limits = ConnectionLimits(max_connections=8, first_request_seconds=60)
    with serving(config, limits) as server, ExitStack() as stack:
        slow = [stack.enter_context(socket.create_connection(("127.0.0.1", server.port))) for _ in range(20)]
        for sock in slow:
            sock.sendall(b"\x16\x03\x01\x02\x00")  # the start of a ClientHello, and nothing more
        assert get(server.port, tls=trusted)[0] == 200
        still_open = [sock for sock in slow if not closed_by_server(sock, 0.5)]
        assert len(still_open) <= limits.max_connections


# --- request bodies (item 10) ---------------------------------------------------------------------


def responses(sock: socket.socket) -> list[tuple[int, bytes]]:
    """Every response the server sends on `sock` until it closes or goes quiet for 1 s."""
    sock.settimeout(1)
    reader = sock.makefile("rb")
    found = []
    while True:
        try:
            status_line = reader.readline()
            if not status_line:
                break
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            found.append((int(status_line.split()[1]), reader.read(length)))
        except OSError:  # quiet (timeout) or reset
            break
    return found


SMUGGLED = b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n"


def test_a_get_body_is_dropped_not_read_as_the_next_request() -> None:
    with serving() as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED
                     + b"GET /-/ready HTTP/1.1\r\nHost: x\r\n\r\n")
        got = responses(sock)
    assert [status for status, _ in got] == [200, 503]  # /metrics, then /-/ready; no /-/healthy answer
    assert got[0][1] == PAYLOAD and b"OK\n" not in [body for _, body in got]


@pytest.mark.parametrize("headers, status", [
    (b"Content-Length: 65537\r\n", 413),
    (b"Transfer-Encoding: chunked\r\n", 400),
    (b"Content-Length: 3\r\nContent-Length: 37\r\n", 400),
    (b"Content-Length: -1\r\n", 400),
])
def test_a_body_that_cannot_be_dropped_is_refused_and_the_connection_closed(headers: bytes, status: int) -> None:
    with serving() as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n" + b"0\r\n\r\n" + SMUGGLED)
        got = responses(sock)
    assert [code for code, _ in got] == [status]


def test_a_body_within_the_limit_is_dropped_on_a_tls_keep_alive_connection(material: TLSMaterial) -> None:
    config = WebConfig(tls=TLSConfig(cert_file=material.server_cert, key_file=material.server_key))
    trusted = ssl.create_default_context(cafile=str(material.ca_cert))
    body = b"x" * 65536
    with serving(config) as server, socket.create_connection(("127.0.0.1", server.port)) as raw, \
            trusted.wrap_socket(raw, server_hostname="localhost") as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\n\r\n" + body
                     + b"GET /-/ready HTTP/1.1\r\nHost: x\r\n\r\n")
        got = responses(sock)
    assert [status for status, _ in got] == [200, 503]


