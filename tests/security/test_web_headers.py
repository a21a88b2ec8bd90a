"""Issue 11, item 7: a configured response header that cannot be sent (a typographic quote, a control
character) is refused when the web config is loaded or reloaded, never discovered at the first reply."""
from __future__ import annotations

import gzip
import http.client
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from batch_exporter.web import MetricsServer, Page
from batch_exporter.webconfig import WebConfig, WebConfigError, header_problems, load_web_config

pytestmark = pytest.mark.timeout(60)

CURLY_CSP = "default-src \u2019self\u2019"  # what a word processor makes of 'self'


class Endpoints:
    def metrics_payload(self) -> tuple[bytes, bytes]:
        return b"up 1\n", gzip.compress(b"up 1\n")

    def is_ready(self) -> bool:
        return True

    def status_page(self) -> Page:
        return Page(b"<!DOCTYPE html><title>status</title>\n", gzip.compress(b"<!DOCTYPE html><title>status</title>\n"))

    def status_json(self) -> Page:
        return Page(b"{}\n", gzip.compress(b"{}\n"))


@contextmanager
def serving(config: WebConfig | None) -> Iterator[MetricsServer]:
    server = MetricsServer("127.0.0.1:0", Endpoints(), config)
    server.start()
    try:
        yield server
    finally:
        server.shutdown()


def healthy(port: int) -> tuple[int, str | None]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/-/healthy")
        response = conn.getresponse()
        response.read()
        return response.status, response.headers.get("Content-Security-Policy")
    finally:
        conn.close()


def test_a_typographic_quote_in_a_header_is_refused_at_load_naming_file_line_and_header(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text("http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
                    f"    Content-Security-Policy: \"{CURLY_CSP}\"\n", encoding="utf-8")
    with pytest.raises(WebConfigError) as caught:
        load_web_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:4: http_server_config.headers.Content-Security-Policy: ")
    assert "U+2019" in message and "latin-1" in message


@pytest.mark.parametrize("value, words", [
    ("default-src 'self'\u0000", "U+0000"),
    ("default-src 'self'\x7f", "U+007F"),
    ("a\rb", "line break"),
    ("default-src \u201cself\u201d", "U+201C"),
])
def test_values_that_cannot_be_sent_are_named(value: str, words: str) -> None:
    [(name, why)] = header_problems({"Content-Security-Policy": value})
    assert name == "Content-Security-Policy" and words in why


def test_values_that_can_be_sent_pass() -> None:
    assert header_problems({"Content-Security-Policy": "default-src 'self';\tscript-src 'none' caf\u00e9",
                            "X-Frame-Options": "deny"}) == []


def test_a_bad_header_on_reload_keeps_the_running_config() -> None:
    good = WebConfig(headers={"Content-Security-Policy": "default-src 'self'"})
    with serving(good) as server:
        assert healthy(server.port) == (200, "default-src 'self'")
        with pytest.raises(WebConfigError, match=r"http_server_config\.headers\.Content-Security-Policy: .*U\+2019"):
            server.reload_web_config(WebConfig(headers={"Content-Security-Policy": CURLY_CSP}))
        assert healthy(server.port) == (200, "default-src 'self'")


def test_a_bad_header_given_directly_is_refused_before_serving() -> None:
    with pytest.raises(WebConfigError, match="U\\+2019"):
        MetricsServer("127.0.0.1:0", Endpoints(), WebConfig(headers={"Content-Security-Policy": CURLY_CSP}))
