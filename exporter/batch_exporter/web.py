"""The HTTP server: pre-rendered /metrics and status page, health and readiness, optional TLS and bcrypt
basic auth.

A scrape only copies bytes the caller rendered beforehand (`Endpoints.metrics_payload`), so it never
waits on a database. One thread per connection with HTTP/1.1 keep-alive and Nagle disabled; TLS is
negotiated in that connection's thread, never inside `accept()`, so a client that connects and stays
silent cannot stall anyone else.

Hostile clients are bounded (`ConnectionLimits`): at most `max_connections` connections at once, and
when full the one that has waited longest for a request is cut to make room; the TLS handshake and the
first request must arrive within `first_request_seconds` of the connection; password checks run in a
small pool that refuses at once (503 or 429, with Retry-After) when full, so a flood of wrong passwords
cannot queue a valid scrape past its timeout.
"""
from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import os
import re
import secrets
import selectors
import socket
import socketserver
import ssl
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import urlsplit

import bcrypt

from .webconfig import WebConfig, WebConfigError, header_problems
from .yamlsource import Problem

DEFAULT_PORT = 10117
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_TEXT = "text/plain; charset=utf-8"
_VARY = ("Vary", "Accept-Encoding")
_NO_CACHE = ("Cache-Control", "no-cache")
HANDSHAKE_TIMEOUT_SECONDS = 10.0
# Prometheus keeps a scrape connection open between scrapes; idle longer than this and it is closed.
IDLE_TIMEOUT_SECONDS = 120.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectionLimits:
    """Bounds on what unauthenticated clients can make the server hold or compute."""

    max_connections: int = 128
    first_request_seconds: float = 5.0  # TLS handshake + request line + headers + body of a new connection
    idle_seconds: float = IDLE_TIMEOUT_SECONDS
    max_body_bytes: int = 64 * 1024  # a body on GET/HEAD is read and dropped up to this size
    password_workers: int = 2  # bcrypt checks running at once
    password_checks: int = 16  # checks running or waiting; more are refused with 503
    password_checks_per_client: int = 2  # per client address; more are refused with 429


@dataclass(frozen=True)
class Page:
    """A pre-rendered answer: its bytes, their gzip, and the headers it asks for (a web config's header of
    the same name wins over them)."""

    plain: bytes
    gzipped: bytes
    headers: tuple[tuple[str, str], ...] = ()


class Endpoints(Protocol):
    """What the server serves; both calls must be cheap and must not block on I/O."""

    def metrics_payload(self) -> tuple[bytes, bytes]:
        """The latest exposition text and its gzip, both rendered beforehand."""
        ...

    def is_ready(self) -> bool:
        """True once every source has completed a first poll."""
        ...

    def status_page(self) -> Page:
        """The status page (HTML), rendered from the latest snapshots beforehand or at most now."""
        ...

    def status_json(self) -> Page:
        """The status page's data as JSON."""
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


class AuthBusy(Exception):
    """Too many password checks in flight: refuse now rather than queue (`status` is 503 or 429)."""

    def __init__(self, status: HTTPStatus) -> None:
        super().__init__(status.phrase)
        self.status = status


class BasicAuth:
    """Checks `Authorization: Basic` against bcrypt hashes.

    bcrypt is slow on purpose (tens of ms per check), so accepted credentials are remembered, keyed by
    an HMAC under a per-process random key: plain passwords are never kept, and repeat scrapes cost a
    dictionary lookup. Other attempts pay for bcrypt in a pool of `workers` threads; at most `checks`
    attempts wait or run at once, `per_client` of them from one client address, and any more raise
    AuthBusy at once. A flood from one address therefore cannot fill the pool, and whoever gets in
    waits for at most `checks / workers` bcrypt runs.
    """

    _REMEMBERED_LIMIT = 1024

    def __init__(self, users: Mapping[str, str], *, workers: int = 2, checks: int = 16, per_client: int = 2) -> None:
        self.users = dict(users)
        self._hashes = {user.encode(): hashed.encode() for user, hashed in users.items()}
        self._key = secrets.token_bytes(32)
        self._granted: set[bytes] = set()
        self._granted_lock = threading.Lock()
        self._workers = threading.BoundedSemaphore(workers)
        self._max_checks, self._max_per_client = checks, per_client
        self._checks = 0
        self._per_client: dict[str, int] = {}
        self._admission = threading.Lock()
        self._decoy_lock = threading.Lock()
        self._decoy: bytes | None = None

    def allows(self, authorization: str | None, client: str = "") -> bool:
        """True when the header carries a configured user and its password; AuthBusy when the pool is full."""
        credentials = _basic_credentials(authorization)
        if credentials is None:
            return False
        user, password = credentials
        key = hmac.new(self._key, len(user).to_bytes(4, "big") + user + password, hashlib.sha256).digest()
        with self._granted_lock:
            if key in self._granted:
                return True
        hashed = self._hashes.get(user)
        self._admit(client)
        try:
            # An unknown user is checked against a decoy hash so that timing does not reveal user names.
            expected = hashed if hashed is not None else self._decoy_hash()
            with self._workers:
                matches = _bcrypt_matches(password, expected)
        finally:
            self._leave(client)
        if not (matches and hashed is not None):
            return False
        with self._granted_lock:
            if len(self._granted) >= self._REMEMBERED_LIMIT:
                self._granted.clear()
            self._granted.add(key)
        return True

    def _admit(self, client: str) -> None:
        with self._admission:
            if self._per_client.get(client, 0) >= self._max_per_client:
                raise AuthBusy(HTTPStatus.TOO_MANY_REQUESTS)
            if self._checks >= self._max_checks:
                raise AuthBusy(HTTPStatus.SERVICE_UNAVAILABLE)
            self._checks += 1
            self._per_client[client] = self._per_client.get(client, 0) + 1

    def _leave(self, client: str) -> None:
        with self._admission:
            self._checks -= 1
            left = self._per_client.pop(client) - 1
            if left:
                self._per_client[client] = left

    def _decoy_hash(self) -> bytes:
        with self._decoy_lock:
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
    def from_config(cls, config: WebConfig | None, limits: ConnectionLimits,
                    previous: _Security | None = None) -> _Security:
        """Raises WebConfigError on a header that cannot be sent; keeps `previous`'s remembered logins
        when the users did not change."""
        if config is None:
            return cls(None, None, ())
        bad_headers = header_problems(config.headers)
        if bad_headers:
            raise WebConfigError("web config", [Problem(("http_server_config", "headers", name), None, why)
                                                for name, why in bad_headers])
        auth = None
        if config.basic_auth_users:
            if previous is not None and previous.auth is not None and previous.auth.users == config.basic_auth_users:
                auth = previous.auth
            else:
                auth = BasicAuth(config.basic_auth_users, workers=limits.password_workers,
                                 checks=limits.password_checks, per_client=limits.password_checks_per_client)
        return cls(
            tls=config.tls.ssl_context() if config.tls is not None else None,
            auth=auth,
            headers=tuple(config.headers.items()),
        )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = IDLE_TIMEOUT_SECONDS
    server: _HTTPServer

    def __init__(self, request: Any, client_address: Any, server: _HTTPServer, slot: _Slot) -> None:
        self.slot = slot
        super().__init__(request, client_address, server)

    def handle_one_request(self) -> None:
        super().handle_one_request()
        if not self.close_connection:
            self.slot.wait(self.server.limits.idle_seconds)

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
        try:
            if auth is None or auth.allows(self.headers.get("Authorization"), str(self.client_address[0])):
                return True
        except AuthBusy as busy:
            self.close_connection = True
            self._reply(busy.status, b"Too many password checks in progress, retry shortly\n", send_body,
                        extra=(("Retry-After", "1"),))
            return False
        # Closed so that an unauthenticated client cannot keep a connection and its thread.
        self.close_connection = True
        self._reply(HTTPStatus.UNAUTHORIZED, b"Unauthorized\n", send_body, extra=(("WWW-Authenticate", "Basic"),))
        return False

    def _drop_body(self) -> bool:
        """Read and discard a request body so that it is not taken for the next request; False once
        refused (a reply was sent and the connection will close)."""
        refusal = None
        lengths = {value.strip() for value in self.headers.get_all("Content-Length", [])}
        if self.headers.get_all("Transfer-Encoding"):
            refusal = HTTPStatus.BAD_REQUEST, b"Request bodies are not accepted here\n"
        elif len(lengths) > 1 or not all(length.isdigit() for length in lengths):
            refusal = HTTPStatus.BAD_REQUEST, b"Invalid Content-Length\n"
        elif lengths and int(next(iter(lengths))) > self.server.limits.max_body_bytes:
            refusal = HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"Request body too large\n"
        if refusal is not None:
            self.close_connection = True
            self._reply(*refusal)
            return False
        remaining = int(next(iter(lengths))) if lengths else 0
        while remaining:
            chunk = self.rfile.read(min(remaining, 16384))
            if not chunk:
                self.close_connection = True
                return False
            remaining -= len(chunk)
        return True

    def _serve(self, send_body: bool) -> None:
        if not self._drop_body():
            return
        self.slot.busy()
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
            return self._page(endpoints.status_page(), "text/html; charset=utf-8")
        if path == "/api/v1/status":
            return self._page(endpoints.status_json(), "application/json")
        if path == "/-/healthy":
            return HTTPStatus.OK, b"OK\n", _TEXT, ()
        if path == "/-/ready":
            if endpoints.is_ready():
                return HTTPStatus.OK, b"Ready\n", _TEXT, ()
            return HTTPStatus.SERVICE_UNAVAILABLE, b"Not ready: sources have not all been polled yet\n", _TEXT, ()
        return HTTPStatus.NOT_FOUND, b"Not found\n", _TEXT, ()

    def _page(self, page: Page, content_type: str) -> tuple[HTTPStatus, bytes, str, tuple[tuple[str, str], ...]]:
        configured = {name.lower() for name, _ in self.server.security.headers}
        own = tuple((name, value) for name, value in page.headers if name.lower() not in configured)
        if accepts_gzip(self.headers.get("Accept-Encoding")):
            return HTTPStatus.OK, page.gzipped, content_type, (("Content-Encoding", "gzip"), _VARY, _NO_CACHE, *own)
        return HTTPStatus.OK, page.plain, content_type, (_VARY, _NO_CACHE, *own)

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


class _Slot:
    """One admitted connection: its socket (swapped for the TLS one after wrapping) and its deadline."""

    def __init__(self, connection: socket.socket, deadline: float) -> None:
        self.connection = connection
        self.waiting_since: float | None = time.monotonic()  # None while a request is being answered
        self.deadline: float | None = deadline
        self.cut = False
        self._lock = threading.Lock()

    def swap(self, connection: socket.socket) -> bool:
        """Track the TLS socket from now on; False when the slot was cut meanwhile."""
        with self._lock:
            self.connection = connection
            return not self.cut

    def busy(self) -> None:
        with self._lock:
            self.waiting_since = self.deadline = None

    def wait(self, seconds: float) -> None:
        with self._lock:
            self.waiting_since = now = time.monotonic()
            self.deadline = now + seconds

    def cut_now(self) -> None:
        with self._lock:
            self.cut = True
            # The plain socket method: on a TLS socket it cuts the TCP stream without touching TLS state.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(self.connection, socket.SHUT_RDWR)


class _Slots:
    """The admitted connections, oldest first, at most `limit` of them."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._slots: OrderedDict[_Slot, None] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, connection: socket.socket, first_request_seconds: float) -> _Slot | None:
        """A slot for a new connection, cutting the longest-waiting one if full; None if all are busy."""
        victim = None
        with self._lock:
            if len(self._slots) >= self._limit:
                waiting = [slot for slot in self._slots if slot.waiting_since is not None]
                if not waiting:
                    return None
                victim = min(waiting, key=lambda slot: slot.waiting_since or 0.0)
                del self._slots[victim]
            slot = _Slot(connection, time.monotonic() + first_request_seconds)
            self._slots[slot] = None
        if victim is not None:
            log.debug("connection limit reached: cutting the connection that waited longest")
            victim.cut_now()
        return slot

    def release(self, slot: _Slot) -> None:
        with self._lock:
            self._slots.pop(slot, None)

    def reap(self) -> None:
        """Cut the connections whose handshake, request or idle time ran out."""
        now = time.monotonic()
        with self._lock:
            late = [slot for slot in self._slots if slot.deadline is not None and slot.deadline < now]
            for slot in late:
                del self._slots[slot]
        for slot in late:
            slot.cut_now()

    def cut_all(self) -> None:
        with self._lock:
            slots = list(self._slots)
            self._slots.clear()
        for slot in slots:
            slot.cut_now()

    def __len__(self) -> int:
        with self._lock:
            return len(self._slots)


_REAP_INTERVAL_SECONDS = 0.2  # how often connections past their first-request deadline are cut


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    # On Windows SO_REUSEADDR lets a second process take over a bound port; elsewhere it only skips TIME_WAIT.
    allow_reuse_address = os.name != "nt"

    def __init__(self, host: str, port: int, endpoints: Endpoints, security: _Security,
                 limits: ConnectionLimits) -> None:
        family, bind_host = _bind_target(host, port)
        self.address_family = family
        self.endpoints = endpoints
        self.security = security
        self.limits = limits
        self.slots = _Slots(limits.max_connections)
        self._stop_requested = threading.Event()
        self._stopped = threading.Event()
        # Unused: _finish_connection builds each _Handler itself, handing it the connection's slot.
        super().__init__((bind_host, port), BaseHTTPRequestHandler, bind_and_activate=False)
        try:
            self._wake_reader, self._wake_writer = socket.socketpair()
        except BaseException:
            self.socket.close()
            raise
        try:
            if family == socket.AF_INET6 and host == "":
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            self.server_bind()
            self.server_activate()
        except BaseException:
            self.server_close()
            raise

    def accept_until_stopped(self) -> None:
        """The accept loop. Unlike serve_forever, which notices a shutdown only at its next poll, it
        ends as soon as `stop` is called: a stop, a reload of a test's server, never waits a poll out."""
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self, selectors.EVENT_READ)
                selector.register(self._wake_reader, selectors.EVENT_READ)
                while not self._stop_requested.is_set():
                    for key, _ in selector.select(_REAP_INTERVAL_SECONDS):
                        if key.fileobj is self and not self._stop_requested.is_set():
                            self._handle_request_noblock()  # type: ignore[attr-defined]  # accept + process
                    self.service_actions()
        finally:
            self._stopped.set()

    def stop(self) -> None:
        """End the accept loop and wait for it (call from another thread)."""
        self._stop_requested.set()
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"\0")
        self._stopped.wait()

    def server_close(self) -> None:
        super().server_close()
        self._wake_reader.close()
        self._wake_writer.close()

    def server_bind(self) -> None:
        # HTTPServer.server_bind would also look up the host's FQDN, which can block on DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        """In the accept loop: admit the connection (or drop it), then serve it in its own thread."""
        slot = self.slots.admit(request, self.limits.first_request_seconds)
        if slot is None:
            log.debug("connection limit reached with every connection busy: dropping %s", client_address)
            self.shutdown_request(request)
            return
        thread = threading.Thread(target=self._serve_connection, args=(request, client_address, slot),
                                  name="http-connection", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # the system refused another thread
            self.slots.release(slot)
            self.shutdown_request(request)

    def service_actions(self) -> None:
        self.slots.reap()

    def _serve_connection(self, request: socket.socket, client_address: Any, slot: _Slot) -> None:
        try:
            self._finish_connection(request, client_address, slot)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.slots.release(slot)
            self.shutdown_request(request)

    def _finish_connection(self, request: socket.socket, client_address: Any, slot: _Slot) -> None:
        """TLS handshake (if any), then HTTP requests."""
        connection: socket.socket = request
        try:
            context = self.security.tls
            if context is not None:
                tls_connection = self._handshake(request, context, client_address, slot)
                if tls_connection is None:
                    return
                connection = tls_connection
            _Handler(connection, client_address, self, slot)
        finally:
            if connection is not request:
                _close_quietly(connection)

    def _handshake(self, request: socket.socket, context: ssl.SSLContext,
                   client_address: Any, slot: _Slot) -> ssl.SSLSocket | None:
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
            if not slot.swap(tls_connection):  # cut while wrapping: the old socket object is detached
                raise ConnectionAbortedError("connection cut before the TLS handshake")
            tls_connection.do_handshake()
            return tls_connection
        except (OSError, ValueError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            _close_quietly(tls_connection)
            return None

    def close_connections(self) -> None:
        """Cut every open connection, so that idle keep-alive clients are not served after shutdown."""
        self.slots.cut_all()

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
    """Serves /metrics, / (the status page), /api/v1/status, /-/healthy and /-/ready on one address, in
    background threads."""

    def __init__(self, listen_address: str, endpoints: Endpoints, web_config: WebConfig | None = None, *,
                 limits: ConnectionLimits = ConnectionLimits()) -> None:
        self.listen_address = listen_address
        self._host, self.port = parse_listen_address(listen_address)
        self._endpoints = endpoints
        self._limits = limits
        self._security = _Security.from_config(web_config, limits)
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and start serving; returns once the socket listens. `port` then holds the bound port."""
        if self._server is not None:
            raise RuntimeError("server already started")
        try:
            server = _HTTPServer(self._host, self.port, self._endpoints, self._security, self._limits)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen on {self.listen_address}: {exc.strerror or exc}") from None
        self._server = server
        self.port = server.server_port
        self._thread = threading.Thread(target=server.accept_until_stopped, name=f"http-{self.port}", daemon=True)
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
        server.stop()
        server.server_close()
        server.close_connections()
        thread.join()
        self._server = self._thread = None

    def reload_web_config(self, web_config: WebConfig | None) -> None:
        """Swap TLS, users and headers; applies to new requests (TLS: to new connections). Logins already
        accepted stay remembered when the users did not change. Raises WebConfigError (and changes
        nothing) on a config that cannot be served."""
        security = _Security.from_config(web_config, self._limits, self._security)  # raises before any change
        self._security = security
        if self._server is not None:
            self._server.security = security
