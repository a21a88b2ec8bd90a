"""The HTTP server: pre-rendered /metrics, health and readiness, optional TLS and bcrypt basic auth.

A scrape only copies bytes the caller rendered beforehand (`Endpoints.metrics_payload`), so it never
waits on a database. One thread per connection with HTTP/1.1 keep-alive and Nagle disabled; TLS is
negotiated in that connection's thread with a deadline, never inside `accept()`, so a client that
connects and stays silent cannot stall anyone else.
"""
from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import html
import ipaddress
import logging
import os
import re
import secrets
import socket
import socketserver
import ssl
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import urlsplit

import bcrypt

from .webconfig import WebConfig

DEFAULT_PORT = 10117
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_TEXT = "text/plain; charset=utf-8"
_VARY = ("Vary", "Accept-Encoding")
HANDSHAKE_TIMEOUT_SECONDS = 10.0
# Prometheus keeps a scrape connection open between scrapes; idle longer than this and it is closed.
IDLE_TIMEOUT_SECONDS = 120.0

log = logging.getLogger(__name__)


class Endpoints(Protocol):
    """What the server serves; both calls must be cheap and must not block on I/O."""

    def metrics_payload(self) -> tuple[bytes, bytes]:
        """The latest exposition text and its gzip, both rendered beforehand."""
        ...

    def is_ready(self) -> bool:
        """True once every source has completed a first poll."""
        ...


class ListenAddressError(ValueError):
    """A `--web.listen-address` that is not HOST:PORT."""


_LISTEN_ADDRESS = re.compile(r"(?:\[(?P<ipv6>[^\[\]]+)\]|(?P<host>[A-Za-z0-9.\-_]*)):(?P<port>[0-9]{1,5})")


def parse_listen_address(text: str) -> tuple[str, int]:
    """Split ':10117', '0.0.0.0:10117', '[::1]:10117' or 'localhost:0' into (host, port); '' means all."""
    match = _LISTEN_ADDRESS.fullmatch(text.strip())
    expected = f"expected HOST:PORT, :PORT or [IPV6]:PORT, for example :{DEFAULT_PORT}"
    if match is None:
        raise ListenAddressError(f"invalid listen address {text!r}: {expected}")
    port = int(match["port"])
    if port > 65535:
        raise ListenAddressError(f"invalid listen address {text!r}: port {port} is above 65535")
    if match["ipv6"] is not None:
        try:
            ipaddress.IPv6Address(match["ipv6"])
        except ValueError:
            raise ListenAddressError(
                f"invalid listen address {text!r}: {match['ipv6']!r} is not an IPv6 address") from None
        return match["ipv6"], port
    return match["host"], port


def accepts_gzip(accept_encoding: str | None) -> bool:
    """True when an Accept-Encoding header lists gzip with a non-zero quality."""
    for item in (accept_encoding or "").split(","):
        coding, *params = item.split(";")
        if coding.strip().lower() != "gzip":
            continue
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


# --- basic auth -----------------------------------------------------------------------------------


def _basic_credentials(header: str | None) -> tuple[bytes, bytes] | None:
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(b":")
    return (user, password) if colon else None


class BasicAuth:
    """Checks `Authorization: Basic` against bcrypt hashes.

    bcrypt is slow on purpose (tens of ms per check), so accepted credentials are remembered, keyed by
    an HMAC under a per-process random key: plain passwords are never kept, and repeat scrapes cost a
    dictionary lookup. Failed attempts always pay for bcrypt, one at a time.
    """

    _REMEMBERED_LIMIT = 1024

    def __init__(self, users: Mapping[str, str]) -> None:
        self._hashes = {user.encode(): hashed.encode() for user, hashed in users.items()}
        self._key = secrets.token_bytes(32)
        self._granted: set[bytes] = set()
        self._granted_lock = threading.Lock()
        self._bcrypt_lock = threading.Lock()
        self._decoy: bytes | None = None

    def allows(self, authorization: str | None) -> bool:
        """True when the header carries a configured user and its password."""
        credentials = _basic_credentials(authorization)
        if credentials is None:
            return False
        user, password = credentials
        key = hmac.new(self._key, len(user).to_bytes(4, "big") + user + password, hashlib.sha256).digest()
        with self._granted_lock:
            if key in self._granted:
                return True
        hashed = self._hashes.get(user)
        with self._bcrypt_lock:
            # An unknown user is checked against a decoy hash so that timing does not reveal user names.
            matches = _bcrypt_matches(password, hashed if hashed is not None else self._decoy_hash())
        if not (matches and hashed is not None):
            return False
        with self._granted_lock:
            if len(self._granted) >= self._REMEMBERED_LIMIT:
                self._granted.clear()
            self._granted.add(key)
        return True

    def _decoy_hash(self) -> bytes:
        if self._decoy is None:
            sample = next(iter(self._hashes.values()), b"$2b$10$")
            cost = int(sample[4:6]) if sample[4:6].isdigit() else 10
            self._decoy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=cost))
        return self._decoy


def _bcrypt_matches(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:  # malformed hash, or a password over bcrypt's 72-byte limit
        return False


# --- what each connection needs ------------------------------------------------------------------


@dataclass(frozen=True)
class _Security:
    tls: ssl.SSLContext | None
    auth: BasicAuth | None
    headers: tuple[tuple[str, str], ...]

    @classmethod
    def from_config(cls, config: WebConfig | None) -> _Security:
        if config is None:
            return cls(None, None, ())
        return cls(
            tls=config.tls.ssl_context() if config.tls is not None else None,
            auth=BasicAuth(config.basic_auth_users) if config.basic_auth_users else None,
            headers=tuple(config.headers.items()),
        )


def _landing_page(title: str, version: str) -> bytes:
    name = html.escape(title)
    version_line = f"<p>Version {html.escape(version)}</p>\n" if version else ""
    return (
        f"<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\"><title>{name}</title></head>\n<body>\n"
        f"<h1>{name}</h1>\n{version_line}<ul>\n"
        "<li><a href=\"metrics\">Metrics</a></li>\n"
        "<li><a href=\"-/healthy\">Health</a></li>\n"
        "<li><a href=\"-/ready\">Readiness</a></li>\n"
        "</ul>\n</body>\n</html>\n"
    ).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = IDLE_TIMEOUT_SECONDS
    server: _HTTPServer

    def version_string(self) -> str:
        return "batch-exporter"

    def do_GET(self) -> None:
        self._serve(send_body=True)

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    def __getattr__(self, name: str) -> Callable[[], None]:
        # http.server looks up do_<METHOD>; every method other than GET and HEAD lands here.
        if name.startswith("do_"):
            return self._method_not_allowed
        raise AttributeError(name)

    def _method_not_allowed(self) -> None:
        self.close_connection = True  # a request body we do not read must not be taken for the next request
        if self._authorized(send_body=True):
            self._reply(HTTPStatus.METHOD_NOT_ALLOWED, b"Method not allowed\n", extra=(("Allow", "GET, HEAD"),))

    def _authorized(self, send_body: bool) -> bool:
        auth = self.server.security.auth
        if auth is None or auth.allows(self.headers.get("Authorization")):
            return True
        self._reply(HTTPStatus.UNAUTHORIZED, b"Unauthorized\n", send_body, extra=(("WWW-Authenticate", "Basic"),))
        return False

    def _serve(self, send_body: bool) -> None:
        if not self._authorized(send_body):
            return
        try:
            status, body, content_type, extra = self._answer(urlsplit(self.path).path)
        except Exception:
            log.exception("error while answering %s", self.path)
            status, body, content_type, extra = HTTPStatus.INTERNAL_SERVER_ERROR, b"Internal server error\n", _TEXT, ()
        self._reply(status, body, send_body, content_type, extra)

    def _answer(self, path: str) -> tuple[HTTPStatus, bytes, str, tuple[tuple[str, str], ...]]:
        endpoints = self.server.endpoints
        if path == "/metrics":
            plain, gzipped = endpoints.metrics_payload()
            if accepts_gzip(self.headers.get("Accept-Encoding")):
                return HTTPStatus.OK, gzipped, METRICS_CONTENT_TYPE, (("Content-Encoding", "gzip"), _VARY)
            return HTTPStatus.OK, plain, METRICS_CONTENT_TYPE, (_VARY,)
        if path == "/":
            return HTTPStatus.OK, self.server.landing_page, "text/html; charset=utf-8", ()
        if path == "/-/healthy":
            return HTTPStatus.OK, b"OK\n", _TEXT, ()
        if path == "/-/ready":
            if endpoints.is_ready():
                return HTTPStatus.OK, b"Ready\n", _TEXT, ()
            return HTTPStatus.SERVICE_UNAVAILABLE, b"Not ready: sources have not all been polled yet\n", _TEXT, ()
        return HTTPStatus.NOT_FOUND, b"Not found\n", _TEXT, ()

    def _reply(self, status: HTTPStatus, body: bytes, send_body: bool = True,
               content_type: str = _TEXT, extra: tuple[tuple[str, str], ...] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra + self.server.security.headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # Access lines never include headers, so credentials cannot leak here.
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s", self.address_string(), format % args)


# --- the listening server -------------------------------------------------------------------------


_PLAIN_HTTP_TO_TLS = (b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
                      b"Client sent an HTTP request to an HTTPS server.\n")
_TLS_HANDSHAKE_RECORD = 0x16


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    # On Windows SO_REUSEADDR lets a second process take over a bound port; elsewhere it only skips TIME_WAIT.
    allow_reuse_address = os.name != "nt"

    def __init__(self, host: str, port: int, endpoints: Endpoints, security: _Security, landing_page: bytes) -> None:
        family, bind_host = _bind_target(host, port)
        self.address_family = family
        self.endpoints = endpoints
        self.security = security
        self.landing_page = landing_page
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__((bind_host, port), _Handler, bind_and_activate=False)
        try:
            if family == socket.AF_INET6 and host == "":
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            self.server_bind()
            self.server_activate()
        except BaseException:
            self.server_close()
            raise

    def server_bind(self) -> None:
        # HTTPServer.server_bind would also look up the host's FQDN, which can block on DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Runs in the connection's own thread: TLS handshake (if any), then HTTP requests."""
        connection: socket.socket = request
        self._track(connection)
        try:
            context = self.security.tls
            if context is not None:
                tls_connection = self._handshake(request, context, client_address)
                if tls_connection is None:
                    return
                self._untrack(request)
                connection = tls_connection
            self.RequestHandlerClass(connection, client_address, self)
        finally:
            self._untrack(connection)
            if connection is not request:
                _close_quietly(connection)

    def _handshake(self, request: socket.socket, context: ssl.SSLContext,
                   client_address: Any) -> ssl.SSLSocket | None:
        request.settimeout(HANDSHAKE_TIMEOUT_SECONDS)
        try:
            first = request.recv(1, socket.MSG_PEEK)
            if not first:
                return None
            if first[0] != _TLS_HANDSHAKE_RECORD:
                request.recv(65536)  # consume the request so that closing does not reset the connection
                request.sendall(_PLAIN_HTTP_TO_TLS)
                return None
            tls_connection = context.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        except OSError as exc:
            log.debug("connection from %s closed before TLS: %s", client_address, exc)
            return None
        try:
            self._track(tls_connection)  # so that shutdown() can interrupt a stalled handshake
            tls_connection.do_handshake()
            return tls_connection
        except (OSError, ValueError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            self._untrack(tls_connection)
            _close_quietly(tls_connection)
            return None

    def _track(self, connection: socket.socket) -> None:
        with self._open_lock:
            self._open.add(connection)

    def _untrack(self, connection: socket.socket) -> None:
        with self._open_lock:
            self._open.discard(connection)

    def close_connections(self) -> None:
        """Cut every open connection, so that idle keep-alive clients are not served after shutdown."""
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            # The plain socket method: on a TLS socket it cuts the TCP stream without touching TLS state.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(connection, socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError, ssl.SSLError)):
            log.debug("connection from %s ended: %s", client_address, error)
        else:
            log.error("error while serving %s", client_address, exc_info=True)


def _close_quietly(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        socket.socket.shutdown(connection, socket.SHUT_WR)
    connection.close()


def _bind_target(host: str, port: int) -> tuple[socket.AddressFamily, str]:
    if host == "":
        if socket.has_dualstack_ipv6():
            return socket.AF_INET6, "::"
        return socket.AF_INET, "0.0.0.0"
    try:
        address = ipaddress.ip_address(host)
        return (socket.AF_INET6 if address.version == 6 else socket.AF_INET), host
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(f"cannot listen on {host!r}: {exc.strerror}") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)  # prefer IPv4, as Go's listener does
    family, _, _, _, sockaddr = infos[0]
    return family, str(sockaddr[0])


class MetricsServer:
    """Serves /metrics, /, /-/healthy and /-/ready on one address, in background threads."""

    def __init__(self, listen_address: str, endpoints: Endpoints, web_config: WebConfig | None = None, *,
                 title: str = "batch-exporter", version: str = "") -> None:
        self.listen_address = listen_address
        self._host, self.port = parse_listen_address(listen_address)
        self._endpoints = endpoints
        self._security = _Security.from_config(web_config)
        self._landing_page = _landing_page(title, version)
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and start serving; returns once the socket listens. `port` then holds the bound port."""
        if self._server is not None:
            raise RuntimeError("server already started")
        try:
            server = _HTTPServer(self._host, self.port, self._endpoints, self._security, self._landing_page)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen on {self.listen_address}: {exc.strerror or exc}") from None
        self._server = server
        self.port = server.server_port
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"http-{self.port}", daemon=True)
        self._thread.start()
        security = self._security
        log.info("listening on %s port %d (TLS %s, basic auth %s)", server.server_name, self.port,
                 "on" if security.tls else "off", "on" if security.auth else "off")
        if security.auth is not None and security.tls is None:
            log.warning("basic auth without TLS: passwords cross the network in clear text")

    def shutdown(self) -> None:
        """Stop accepting, cut open connections and wait for the accept loop to end."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        thread.join()
        self._server = self._thread = None

    def reload_web_config(self, web_config: WebConfig | None) -> None:
        """Swap TLS, users and headers; applies to new requests (TLS: to new connections)."""
        security = _Security.from_config(web_config)  # raises before anything changes
        self._security = security
        if self._server is not None:
            self._server.security = security
