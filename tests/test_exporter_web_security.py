"""TLS and basic auth on the running exporter process: accepted and refused."""
from __future__ import annotations

import base64
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt
import pytest

from exporter_process import running_exporter
from run_history import config_yaml, make_history, sqlite_history
from tls_material import make_material, openssl_available

pytestmark = pytest.mark.skipif(not openssl_available(), reason="openssl command needed to make test certificates")


def _get(url: str, context: ssl.SSLContext | None, auth: tuple[str, str] | None) -> int:
    request = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            body = response.read()
            assert b"batch_exporter_build_info" in body
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_tls_and_basic_auth_on_the_process(tmp_path: Path) -> None:
    material = make_material(tmp_path / "tls")
    db = tmp_path / "runs.db"
    sqlite_history(str(db), make_history())
    config = tmp_path / "config.yml"
    config.write_text(config_yaml(f"    sqlite: {db}\n"))
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(f"""
tls_server_config:
  cert_file: {material.server_cert}
  key_file: {material.server_key}
basic_auth_users:
  prometheus: {hashed}
""")
    trusted = ssl.create_default_context(cafile=str(material.ca_cert))
    untrusted = ssl.create_default_context()
    with running_exporter(config, tmp_path, "--web.config.file", str(web)) as exporter:
        https = f"https://localhost:{exporter.port}/metrics"
        assert _get(https, trusted, ("prometheus", "s3cret")) == 200
        assert _get(https, trusted, ("prometheus", "wrong")) == 401
        assert _get(https, trusted, None) == 401
        assert _get(https, trusted, ("nobody", "s3cret")) == 401
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            _get(https, untrusted, ("prometheus", "s3cret"))
        assert _get(f"http://127.0.0.1:{exporter.port}/metrics", None, ("prometheus", "s3cret")) == 400
        assert "s3cret" not in exporter.log() and hashed not in exporter.log()


def test_bad_web_config_refused_at_start(tmp_path: Path) -> None:
    import subprocess
    import sys

    db = tmp_path / "runs.db"
    sqlite_history(str(db), make_history())
    config = tmp_path / "config.yml"
    config.write_text(config_yaml(f"    sqlite: {db}\n"))
    web = tmp_path / "web.yml"
    web.write_text("tls_server_config:\n  cert_file: /nonexistent/cert.pem\n  key_file: /nonexistent/key.pem\n")
    result = subprocess.run([sys.executable, "-m", "batch_exporter.cli", "run", "-c", str(config),
                             "--web.config.file", str(web), "--web.listen-address", "127.0.0.1:0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert str(web) in result.stderr and "tls_server_config.cert_file" in result.stderr
