"""The HTTP server over real sockets on 127.0.0.1: scrapes, TLS, client certificates, basic auth,
misbehaving clients; and the web config loader, cross-checked with `promtool check web-config`."""
from __future__ import annotations

import base64
import gzip
import http.client
import shutil
import socket
import ssl
import subprocess
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import bcrypt
import pytest

from batch_exporter import web
from batch_exporter.web import (
    DEFAULT_PORT,
    METRICS_CONTENT_TYPE,
    BasicAuth,
    ListenAddressError,
    MetricsServer,
    Page,
    accepts_gzip,
    parse_listen_address,
)
from batch_exporter.webconfig import TLSConfig, WebConfig, WebConfigError, load_web_config
from tls_material import (
    TLSMaterial,
    make_ca,
    make_material,
    make_server_with_rsa_key,
    make_signed,
    openssl_available,
)

pytestmark = pytest.mark.timeout(60)

PAYLOAD = b"".join(b'batch_run_last_status{batch="card-auth-%d",status="success"} 1\n' % i for i in range(500))
STATUS_PAGE = b"<!DOCTYPE html><title>status</title>\n"
STATUS_JSON = b'{"batches": []}\n'
PASSWORD = "s3cret pass"
CLIENT_TIMEOUT = 10  # a bound on a hang, not a speed check


class FakeEndpoints:
    def __init__(self, payload: bytes = PAYLOAD) -> None:
        self.payload = payload
        self.ready = False
        self.broken = False

    def metrics_payload(self) -> tuple[bytes, bytes]:
        if self.broken:
            raise RuntimeError("renderer bug")
        return self.payload, gzip.compress(self.payload)

    def is_ready(self) -> bool:
        return self.ready

    def status_page(self) -> Page:
        return Page(STATUS_PAGE, gzip.compress(STATUS_PAGE))

    def status_json(self) -> Page:
        return Page(STATUS_JSON, gzip.compress(STATUS_JSON))


@contextmanager
def serving(web_config: WebConfig | None = None, endpoints: FakeEndpoints | None = None,
            address: str = "127.0.0.1:0") -> Iterator[MetricsServer]:
    server = MetricsServer(address, endpoints or FakeEndpoints(), web_config)
    server.start()
    try:
        yield server
    finally:
        server.shutdown()


def request(port: int, path: str = "/metrics", *, method: str = "GET", headers: dict[str, str] | None = None,
            tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> tuple[int, http.client.HTTPMessage, bytes]:
    if tls is None:
        conn = http.client.HTTPConnection(host, port, timeout=CLIENT_TIMEOUT)
    else:
        conn = http.client.HTTPSConnection("localhost", port, timeout=CLIENT_TIMEOUT, context=tls)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def send_junk(port: int, junk: bytes) -> None:
    """Send bytes that are not a valid request and wait for the server to hang up (a reset is fine too)."""
    with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT) as bad:
        try:
            bad.sendall(junk)
            bad.shutdown(socket.SHUT_WR)
            while bad.recv(65536):
                pass
        except OSError:  # reset, or already disconnected (ENOTCONN) when the server hung up first
            pass


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def client_context(material: TLSMaterial, *, with_cert: bool = False, ca: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca or material.ca_cert))
    if with_cert:
        context.load_cert_chain(str(material.client_cert), str(material.client_key))
    return context


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def promtool_accepts(path: Path) -> bool:
    result = subprocess.run(["promtool", "check", "web-config", str(path)], capture_output=True, text=True,
                            timeout=30)
    return result.returncode == 0


needs_openssl = pytest.mark.skipif(not openssl_available(), reason="openssl command not installed")
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> TLSMaterial:
    if not openssl_available():
        pytest.skip("openssl command not installed")
    return make_material(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def password_hash() -> str:
    return bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


@pytest.fixture
def tls_folder(tmp_path: Path, material: TLSMaterial) -> Path:
    """A folder holding copies of the TLS files, for configs that name them relatively."""
    for source in (material.server_cert, material.server_key, material.ca_cert, material.ca_key):
        shutil.copy(source, tmp_path / source.name)
    return tmp_path


# --- plain HTTP -----------------------------------------------------------------------------------


def test_scrape_returns_the_prerendered_payload() -> None:
    with serving() as server:
        status, headers, body = request(server.port)
    assert status == 200
    assert body == PAYLOAD
    assert headers["Content-Type"] == METRICS_CONTENT_TYPE
    assert headers["Content-Length"] == str(len(PAYLOAD))
    assert headers["Content-Encoding"] is None


def test_gzip_is_sent_when_the_client_asks_for_it() -> None:
    with serving() as server:
        status, headers, body = request(server.port, headers={"Accept-Encoding": "gzip"})
        _, refused_headers, refused_body = request(server.port, headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    assert headers["Content-Length"] == str(len(body))
    assert gzip.decompress(body) == PAYLOAD
    assert refused_headers["Content-Encoding"] is None and refused_body == PAYLOAD


@pytest.mark.parametrize(("header", "expected"), [
    ("gzip", True), ("deflate, gzip;q=1.0, *;q=0.5", True), ("GZIP", True), ("gzip;q=0", False),
    ("gzip;q=0.000", False), ("gzip;q=bogus", False), ("deflate", False), ("", False), (None, False),
])
def test_accepts_gzip(header: str | None, expected: bool) -> None:
    assert accepts_gzip(header) is expected


def test_one_keep_alive_connection_serves_many_requests() -> None:
    with serving() as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=CLIENT_TIMEOUT)
        local_ports = set()
        for path in ("/metrics", "/", "/-/healthy", "/nope", "/metrics"):
            conn.request("GET", path, headers={"Accept-Encoding": "gzip"})
            response = conn.getresponse()
            response.read()
            assert not response.will_close
            assert conn.sock is not None
            local_ports.add(conn.sock.getsockname()[1])
        conn.close()
    assert len(local_ports) == 1


def test_status_page_json_health_readiness_and_unknown_paths() -> None:
    endpoints = FakeEndpoints()
    with serving(endpoints=endpoints) as server:
        landing = request(server.port, "/")
        status_json = request(server.port, "/api/v1/status")
        other_api = [request(server.port, path) for path in ("/api/v1/status/", "/api/v1", "/api/v1/statusx",
                                                               "/index.html", "/status")]
        healthy = request(server.port, "/-/healthy")
        not_ready = request(server.port, "/-/ready")
        endpoints.ready = True
        ready = request(server.port, "/-/ready")
        missing = request(server.port, "/metricsx")
        with_query = request(server.port, "/metrics?debug=1")
    assert landing[0] == 200 and landing[1]["Content-Type"] == "text/html; charset=utf-8"
    assert landing[2] == STATUS_PAGE and landing[1]["Cache-Control"] == "no-cache"
    assert status_json[0] == 200 and status_json[1]["Content-Type"] == "application/json"
    assert status_json[2] == STATUS_JSON and status_json[1]["Cache-Control"] == "no-cache"
    assert [status for status, _, _ in other_api] == [404] * 5
    assert healthy[:1] == (200,) and healthy[2] == b"OK\n"
    assert not_ready[0] == 503
    assert ready[0] == 200
    assert missing[0] == 404
    assert with_query[0] == 200 and with_query[2] == PAYLOAD


def test_head_sends_headers_only_and_other_methods_are_refused() -> None:
    with serving() as server:
        head = request(server.port, method="HEAD")
        posted = request(server.port, method="POST")
        invented = request(server.port, method="BREW")
    assert head[0] == 200 and head[1]["Content-Length"] == str(len(PAYLOAD)) and head[2] == b""
    for status, headers, _ in (posted, invented):
        assert status == 405
        assert headers["Allow"] == "GET, HEAD"


def test_a_failing_payload_is_a_500_and_the_server_keeps_serving() -> None:
    endpoints = FakeEndpoints()
    with serving(endpoints=endpoints) as server:
        endpoints.broken = True
        failed = request(server.port)
        endpoints.broken = False
        recovered = request(server.port)
    assert failed[0] == 500 and b"renderer" not in failed[2]
    assert recovered[0] == 200


def test_an_idle_tcp_client_does_not_stall_others() -> None:
    with serving() as server, socket.create_connection(("127.0.0.1", server.port)) as idle, \
                socket.create_connection(("127.0.0.1", server.port)) as half:
        half.sendall(b"GET /metr")  # a request line that never ends
        assert request(server.port)[0] == 200
        assert idle.fileno() != -1


def test_garbage_from_a_client_does_not_crash_the_server() -> None:
    with serving() as server:
        for junk in (b"\x00\xff" * 100 + b"\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"A" * 70000 + b"\r\n"):
            send_junk(server.port, junk)
        assert request(server.port)[0] == 200


def test_shutdown_cuts_open_keep_alive_connections() -> None:
    server = MetricsServer("127.0.0.1:0", FakeEndpoints())
    server.start()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=CLIENT_TIMEOUT)
    conn.request("GET", "/metrics")
    conn.getresponse().read()
    server.shutdown()
    with pytest.raises((OSError, http.client.HTTPException)):
        conn.request("GET", "/metrics")
        conn.getresponse().read()
    conn.close()


def test_configured_headers_are_added_to_responses() -> None:
    config = WebConfig(headers={"X-Frame-Options": "deny", "X-Content-Type-Options": "nosniff"})
    with serving(config) as server:
        for path in ("/metrics", "/nope"):
            _, headers, _ = request(server.port, path)
            assert headers["X-Frame-Options"] == "deny"
            assert headers["X-Content-Type-Options"] == "nosniff"


# --- listen addresses -----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    (":10117", ("", 10117)),
    ("0.0.0.0:10117", ("0.0.0.0", 10117)),
    ("[::1]:10117", ("::1", 10117)),
    ("[::]:0", ("::", 0)),
    ("localhost:0", ("localhost", 0)),
    ("exporter.example.com:65535", ("exporter.example.com", 65535)),
])
def test_parse_listen_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(text) == expected


@pytest.mark.parametrize("text", ["10117", "localhost", "::1:10117", "[::1]", "[]:1", "[nothost]:1", "host:65536",
                                  "host:port", "", "http://host:1", "host:1/metrics"])
def test_parse_listen_address_rejects(text: str) -> None:
    with pytest.raises(ListenAddressError, match="listen address"):
        parse_listen_address(text)


def test_default_port_is_the_registered_one() -> None:
    assert DEFAULT_PORT == 10117


def test_wildcard_address_binds_a_free_port_reachable_on_loopback() -> None:
    with serving(address=":0") as server:
        assert server.port > 0
        assert request(server.port)[0] == 200
        if socket.has_dualstack_ipv6():
            assert request(server.port, host="::1")[0] == 200


def test_host_name_address_is_resolved() -> None:
    with serving(address="localhost:0") as server:
        assert request(server.port, host="localhost")[0] == 200


def test_port_in_use_is_a_clear_error() -> None:
    with serving() as first:
        second = MetricsServer(f"127.0.0.1:{first.port}", FakeEndpoints())
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{first.port}"):
            second.start()


# --- TLS ------------------------------------------------------------------------------------------


def tls_config(material: TLSMaterial, **changes: object) -> WebConfig:
    tls = TLSConfig(cert_file=material.server_cert, key_file=material.server_key)
    return WebConfig(tls=TLSConfig(**{**tls.__dict__, **changes}))


def test_tls_scrape_is_accepted_with_the_right_ca(material: TLSMaterial) -> None:
    with serving(tls_config(material)) as server:
        status, _, body = request(server.port, tls=client_context(material), headers={"Accept-Encoding": "gzip"})
    assert status == 200 and gzip.decompress(body) == PAYLOAD


def test_tls_server_is_refused_by_a_client_trusting_another_ca(material: TLSMaterial, tmp_path: Path) -> None:
    other_ca, _ = make_ca(tmp_path, "other-ca")
    with serving(tls_config(material)) as server:
        with pytest.raises(ssl.SSLCertVerificationError):
            request(server.port, tls=client_context(material, ca=other_ca))
        assert request(server.port, tls=client_context(material))[0] == 200


def test_plain_http_to_a_tls_port_gets_no_metrics(material: TLSMaterial) -> None:
    with serving(tls_config(material)) as server:
        status, _, body = request(server.port)
    assert status == 400
    assert b"HTTPS" in body and PAYLOAD not in body


def test_client_certificate_required_and_checked(material: TLSMaterial, tmp_path: Path) -> None:
    config = tls_config(material, client_ca_file=material.ca_cert, client_auth_type="RequireAndVerifyClientCert")
    stranger_ca = make_ca(tmp_path, "stranger-ca")
    stranger = make_signed(tmp_path, "stranger", "stranger", stranger_ca, "extendedKeyUsage = clientAuth\n")
    with serving(config) as server:
        assert request(server.port, tls=client_context(material, with_cert=True))[0] == 200
        with pytest.raises((OSError, http.client.HTTPException)):
            request(server.port, tls=client_context(material))
        with_stranger = client_context(material)
        with_stranger.load_cert_chain(str(stranger[0]), str(stranger[1]))
        with pytest.raises((OSError, http.client.HTTPException)):
            request(server.port, tls=with_stranger)
        assert request(server.port, tls=client_context(material, with_cert=True))[0] == 200


def test_client_certificate_optional_when_verify_if_given(material: TLSMaterial) -> None:
    config = tls_config(material, client_ca_file=material.ca_cert, client_auth_type="VerifyClientCertIfGiven")
    with serving(config) as server:
        assert request(server.port, tls=client_context(material))[0] == 200
        assert request(server.port, tls=client_context(material, with_cert=True))[0] == 200


def test_tls_handshake_runs_per_connection_so_idle_clients_do_not_stall(material: TLSMaterial) -> None:
    with serving(tls_config(material)) as server, socket.create_connection(("127.0.0.1", server.port)), \
                socket.create_connection(("127.0.0.1", server.port)) as half:
        half.sendall(b"\x16\x03\x01\x00")  # the start of a ClientHello that never completes
        assert request(server.port, tls=client_context(material))[0] == 200


def test_tls_garbage_does_not_crash_the_server(material: TLSMaterial) -> None:
    with serving(tls_config(material)) as server:
        send_junk(server.port, b"\x16\x03\x01\x00\x05junkjunk")
        assert request(server.port, tls=client_context(material))[0] == 200


def test_tls_below_the_minimum_version_is_refused(material: TLSMaterial) -> None:
    with serving(tls_config(material, min_version="TLS13")) as server:
        old_client = client_context(material)
        old_client.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(ssl.SSLError):
            request(server.port, tls=old_client)
        assert request(server.port, tls=client_context(material))[0] == 200


# --- basic auth -----------------------------------------------------------------------------------


def test_basic_auth_accepts_the_right_password_and_refuses_the_rest(password_hash: str) -> None:
    config = WebConfig(basic_auth_users={"prometheus": password_hash})
    with serving(config) as server:
        good = request(server.port, headers=basic("prometheus", PASSWORD))
        refused = [
            request(server.port, headers=basic("prometheus", "wrong")),
            request(server.port, headers=basic("mallory", PASSWORD)),
            request(server.port),
            request(server.port, headers={"Authorization": "Basic !!!not-base64"}),
            request(server.port, headers={"Authorization": "Bearer " + PASSWORD}),
            request(server.port, "/-/healthy"),
            request(server.port, "/"),
            request(server.port, "/api/v1/status"),
            request(server.port, "/api/v1/status", headers=basic("prometheus", "wrong")),
        ]
    assert good[0] == 200 and good[2] == PAYLOAD
    for status, headers, body in refused:
        assert status == 401
        assert headers["WWW-Authenticate"] == "Basic"
        assert PAYLOAD not in body and STATUS_PAGE not in body and STATUS_JSON not in body


def test_tls_with_basic_auth(material: TLSMaterial, password_hash: str) -> None:
    config = WebConfig(tls=tls_config(material).tls, basic_auth_users={"prometheus": password_hash})
    with serving(config) as server:
        assert request(server.port, tls=client_context(material), headers=basic("prometheus", PASSWORD))[0] == 200
        assert request(server.port, tls=client_context(material))[0] == 401
        for path, body in (("/", STATUS_PAGE), ("/api/v1/status", STATUS_JSON)):
            assert request(server.port, path, tls=client_context(material),
                           headers=basic("prometheus", PASSWORD))[::2] == (200, body)
            assert request(server.port, path, tls=client_context(material))[0] == 401
            assert request(server.port, path)[0] == 400  # plain HTTP to the TLS port, as for /metrics


def test_accepted_credentials_are_remembered_but_failures_are_not(
        password_hash: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real_checkpw = bcrypt.checkpw

    def counting_checkpw(password: bytes, hashed: bytes) -> bool:
        calls.append(password)
        return real_checkpw(password, hashed)

    monkeypatch.setattr(web.bcrypt, "checkpw", counting_checkpw)
    auth = BasicAuth({"prometheus": password_hash, "grafana": password_hash})
    good = basic("prometheus", PASSWORD)["Authorization"]
    assert all(auth.allows(good) for _ in range(5))
    assert len(calls) == 1
    assert not auth.allows(basic("prometheus", "wrong")["Authorization"])
    assert not auth.allows(basic("prometheus", "wrong")["Authorization"])
    assert len(calls) == 3
    # Another user with the same password is checked on its own, not let in by the first user's success.
    assert auth.allows(basic("grafana", PASSWORD)["Authorization"])
    assert not auth.allows(basic("nobody", PASSWORD)["Authorization"])
    assert len(calls) == 5


def test_reload_swaps_users_for_new_requests(password_hash: str) -> None:
    with serving() as server:
        assert request(server.port)[0] == 200
        server.reload_web_config(WebConfig(basic_auth_users={"prometheus": password_hash}))
        assert request(server.port)[0] == 401
        assert request(server.port, headers=basic("prometheus", PASSWORD))[0] == 200
        server.reload_web_config(None)
        assert request(server.port)[0] == 200


def test_repr_of_the_config_hides_password_hashes(password_hash: str) -> None:
    assert password_hash not in repr(WebConfig(basic_auth_users={"prometheus": password_hash}))


# --- loading web config files ---------------------------------------------------------------------


@needs_promtool
def test_good_configs_load_and_promtool_agrees(tls_folder: Path, password_hash: str) -> None:
    configs = {
        "auth-only.yml": f"""
            basic_auth_users:
              prometheus: '{password_hash}'
            """,
        "tls.yml": """
            tls_server_config:
              cert_file: server.crt
              key_file: server.key
              min_version: TLS13
            http_server_config:
              headers:
                X-Frame-Options: deny
                Strict-Transport-Security: max-age=31536000
            """,
        "mtls.yml": f"""
            tls_server_config:
              cert_file: server.crt
              key_file: server.key
              client_ca_file: ca.crt
              client_auth_type: RequireAndVerifyClientCert
            basic_auth_users:
              prometheus: '{password_hash}'
            """,
        "empty.yml": "",
    }
    loaded = {}
    for name, text in configs.items():
        path = write(tls_folder, name, text)
        loaded[name] = load_web_config(path)
        assert promtool_accepts(path), name
    assert loaded["auth-only.yml"].tls is None
    assert loaded["auth-only.yml"].basic_auth_users == {"prometheus": password_hash}
    assert loaded["tls.yml"].tls is not None and loaded["tls.yml"].tls.cert_file == tls_folder / "server.crt"
    assert loaded["tls.yml"].tls.min_version == "TLS13"
    assert loaded["tls.yml"].headers == {"X-Frame-Options": "deny", "Strict-Transport-Security": "max-age=31536000"}
    mtls = loaded["mtls.yml"].tls
    assert mtls is not None and mtls.client_ca_file == tls_folder / "ca.crt"
    assert mtls.client_auth_type == "RequireAndVerifyClientCert"
    assert loaded["empty.yml"] == WebConfig()


def test_relative_files_are_found_next_to_the_config_whatever_the_cwd(
        tls_folder: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tls_folder, "web.yml", """
        tls_server_config:
          cert_file: server.crt
          key_file: ./server.key
        """)
    monkeypatch.chdir(tls_folder.parent)
    config = load_web_config(Path(tls_folder.name) / "web.yml")
    assert config.tls is not None and config.tls.key_file == tls_folder / "server.key"
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    assert load_web_config(tls_folder / "web.yml") == config


# Each case: file text, the dotted field the error must name, words the message must hold, and whether
# promtool refuses it too (None when only batch-exporter refuses: an option it does not support).
BAD_CONFIGS = {
    "unknown top-level key": ("tls_config:\n  cert_file: server.crt\n", "tls_config", "unknown field", True),
    "misspelt tls key": (
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth: NoClientCert\n",
        "tls_server_config.client_auth", "unknown field", True),
    "missing cert file": ("tls_server_config:\n  cert_file: nowhere.crt\n  key_file: server.key\n",
                          "tls_server_config.cert_file", "file not found", True),
    "no key file": ("tls_server_config:\n  cert_file: server.crt\n", "tls_server_config.key_file", "required", True),
    "key of another cert": ("tls_server_config:\n  cert_file: server.crt\n  key_file: ca.key\n",
                            "tls_server_config.key_file", "not the private key", True),
    "certificate is not a certificate": ("tls_server_config:\n  cert_file: server.key\n  key_file: server.key\n",
                                         "tls_server_config.cert_file", "no PEM certificate", True),
    "bad bcrypt hash": ("basic_auth_users:\n  prometheus: plain-text-password\n",
                        "basic_auth_users.prometheus", "bcrypt hash", True),
    "truncated bcrypt hash": ("basic_auth_users:\n  prometheus: '$2y$10$abcdefghijklmnopqrstuv'\n",
                              "basic_auth_users.prometheus", "bcrypt hash", True),
    "client CA without client auth": (
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: ca.crt\n",
        "tls_server_config.client_ca_file", "NoClientCert", True),
    "unknown client auth type": (
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: Always\n",
        "tls_server_config.client_auth_type", "RequireAndVerifyClientCert", True),
    "unknown TLS version": (
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS14\n",
        "tls_server_config.min_version", "TLS14", True),
    "header that cannot be set": ("http_server_config:\n  headers:\n    Server: nginx\n",
                                  "http_server_config.headers", "cannot be configured", True),
    "bad frame options": ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
                          "http_server_config.headers", "deny", True),
    "unverified client certificates": (
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: ca.crt\n"
        "  client_auth_type: RequireAnyClientCert\n",
        "tls_server_config.client_auth_type", "not supported", None),
    "verification without a CA": (
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  client_auth_type: RequireAndVerifyClientCert\n",
        "tls_server_config.client_ca_file", "needs client_ca_file", None),
    "obsolete TLS version": (
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS10\n",
        "tls_server_config.min_version", "obsolete", None),
    "inline certificate": ("tls_server_config:\n  cert: '-----BEGIN CERTIFICATE-----'\n",
                           "tls_server_config.cert", "cert_file", None),
    "not YAML": ("tls_server_config: [unclosed\n", "", "not valid YAML", True),
    "not a mapping": ("- cert_file\n", "", "mapping", True),
}


@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_bad_config_is_an_error_naming_file_and_field(case: str, tls_folder: Path) -> None:
    text, field, words, promtool_refuses = BAD_CONFIGS[case]
    path = write(tls_folder, "web.yml", text)
    with pytest.raises(WebConfigError) as caught:
        load_web_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:")
    assert f": {field}: " in message if field else True
    assert words in message
    if promtool_refuses is not None and shutil.which("promtool"):
        assert not promtool_accepts(path)


def test_bad_hash_error_does_not_echo_the_secret(tmp_path: Path) -> None:
    path = write(tmp_path, "web.yml", "basic_auth_users:\n  prometheus: hunter2-is-my-password\n")
    with pytest.raises(WebConfigError) as caught:
        load_web_config(path)
    assert "hunter2" not in str(caught.value)
    assert str(caught.value).startswith(f"{path}:2: basic_auth_users.prometheus: ")


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError, match="cannot read the file"):
        load_web_config(tmp_path / "absent.yml")


@needs_openssl
def test_tls_config_built_directly_reports_the_bad_field(material: TLSMaterial, tmp_path: Path) -> None:
    with pytest.raises(WebConfigError, match=r"tls_server_config\.cert_file: file not found"):
        TLSConfig(cert_file=tmp_path / "absent.crt", key_file=material.server_key).ssl_context()
    with pytest.raises(WebConfigError, match="key_file"):
        MetricsServer("127.0.0.1:0", FakeEndpoints(), tls_config(material, key_file=material.ca_key))


@needs_openssl
def test_a_1024_bit_rsa_key_is_refused_as_too_small(tmp_path: Path) -> None:
    cert, key = make_server_with_rsa_key(tmp_path, 1024)
    path = write(tmp_path, "web.yml", f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    with pytest.raises(WebConfigError) as caught:
        load_web_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:3: tls_server_config.key_file: ")
    assert "too small" in message and "2048 bits" in message
    assert "not an unencrypted PEM private key" not in message
