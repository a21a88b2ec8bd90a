"""Throwaway TLS material for tests: a CA, a server certificate and a client certificate, made with openssl.

Nothing is checked in: every run makes fresh short-lived keys (EC P-256, quick to generate).
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_SERVER_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""
_CLIENT_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


@dataclass(frozen=True)
class TLSMaterial:
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def openssl_available() -> bool:
    return shutil.which("openssl") is not None


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def _new_key_args(key: Path) -> list[str | Path]:
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key]


def make_ca(folder: Path, name: str = "ca") -> tuple[Path, Path]:
    """A self-signed CA; returns (certificate, key)."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    _openssl("req", "-x509", *_new_key_args(key), "-out", cert, "-days", "2",
             "-subj", f"/CN=batch-exporter test {name}")
    return cert, key


def make_signed(folder: Path, name: str, common_name: str, ca: tuple[Path, Path], extensions: str,
                rsa_bits: int | None = None) -> tuple[Path, Path]:
    """A key (EC P-256, or RSA of `rsa_bits`) and a certificate signed by `ca`; returns (certificate, key)."""
    cert, key, request, ext = (folder / f"{name}{suffix}" for suffix in (".crt", ".key", ".csr", ".ext"))
    ext.write_text(extensions)
    key_args = (["-newkey", f"rsa:{rsa_bits}", "-nodes", "-keyout", key] if rsa_bits is not None
                else _new_key_args(key))
    _openssl("req", "-new", *key_args, "-out", request, "-subj", f"/CN={common_name}")
    _openssl("x509", "-req", "-in", request, "-CA", ca[0], "-CAkey", ca[1], "-set_serial", "1000",
             "-days", "2", "-extfile", ext, "-out", cert)
    request.unlink()
    ext.unlink()
    return cert, key


def make_server_with_rsa_key(folder: Path, bits: int) -> tuple[Path, Path]:
    """A server certificate for localhost with an RSA key of `bits`, signed by a fresh CA."""
    return make_signed(folder, f"server-rsa{bits}", "localhost", make_ca(folder), _SERVER_EXTENSIONS, rsa_bits=bits)


def make_material(folder: Path) -> TLSMaterial:
    """CA + server certificate for localhost/127.0.0.1/::1 + client certificate, all under `folder`."""
    ca = make_ca(folder)
    server = make_signed(folder, "server", "localhost", ca, _SERVER_EXTENSIONS)
    client = make_signed(folder, "client", "prometheus", ca, _CLIENT_EXTENSIONS)
    return TLSMaterial(ca[0], ca[1], server[0], server[1], client[0], client[1])
