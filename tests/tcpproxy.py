"""A loopback TCP proxy a test can cut and restore, to lose a database mid-run without touching it."""
from __future__ import annotations

import contextlib
import socket
import threading
import time


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target while `enabled`; `cut()` drops every connection and
    refuses new ones (accept then close), `freeze()` keeps them open but silent, `restore()` forwards again."""

    def __init__(self, target_host: str, target_port: int, enabled: bool = True) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._enabled = enabled
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._closed = False
        self._frozen = threading.Event()
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                enabled = self._enabled
            if not enabled:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                while self._frozen.is_set() and not self._closed:
                    time.sleep(0.05)  # a silent peer: connections stay open, nothing gets through
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self._lock:
            self._enabled = False
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            except OSError:
                pass

    def freeze(self) -> None:
        """Keep every connection open but pass nothing on: the peer goes silent."""
        self._frozen.set()

    def restore(self) -> None:
        with self._lock:
            self._enabled = True
        self._frozen.clear()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()
