"""The `--web.config.file`: TLS and bcrypt basic auth, in the Prometheus exporter-toolkit format.

Shape checks are pydantic's (unknown keys are errors); then the referenced files are opened and the
TLS context is built once, so a missing file or a key that does not match its certificate is reported
at start-up, naming the file, the line and the field. Relative file names are resolved against the
folder of the config file, as exporter-toolkit does.
"""
from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from .yamlsource import Located, LocatedError, Path_, Problem, YamlProblem, read_text, read_yaml

ClientAuthType = Literal["NoClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert"]
TLSVersionName = Literal["TLS12", "TLS13"]

_TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_VERIFY_MODES = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}

# exporter-toolkit options deliberately not offered; naming them gives a better error than "unknown".
_NOT_SUPPORTED = {
    "cert": "inline PEM is not supported: put the certificate in a file and use cert_file",
    "key": "inline PEM is not supported: put the key in a file and use key_file",
    "client_ca": "inline PEM is not supported: put the CA certificates in a file and use client_ca_file",
    "cipher_suites": "not supported: the TLS library's defaults are used",
    "curve_preferences": "not supported: the TLS library's defaults are used",
    "prefer_server_cipher_suites": "not supported: the TLS library's defaults are used",
    "client_allowed_sans": "not supported: restrict clients with client_ca_file instead",
    "http2": "not supported: batch-exporter serves HTTP/1.1 only",
    "rate_limit": "not supported",
}
# Python's TLS stack verifies every client certificate it asks for, so the toolkit's modes that
# request a certificate without verifying it cannot be offered (its own docs call them insecure).
_UNVERIFIED_CLIENT_AUTH = {"RequestClientCert", "RequireAnyClientCert", "RequireClientCert"}

# Headers exporter-toolkit lets users set, with the only values allowed where the value is an enumeration.
ALLOWED_HEADERS: dict[str, tuple[str, ...]] = {
    "Content-Security-Policy": (),
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
}

_BCRYPT_HASH = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")


# --- errors ---------------------------------------------------------------------------------------


class WebConfigError(LocatedError):
    """The web config cannot be used; `str()` lists every problem as `file:line: dotted.field: message`."""


class _FieldProblem(Exception):
    def __init__(self, path: Path_, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


# --- the result -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TLSConfig:
    """Server TLS settings; paths are absolute once loaded."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_auth_type: ClientAuthType = "NoClientCert"
    min_version: TLSVersionName = "TLS12"
    max_version: TLSVersionName = "TLS13"

    def ssl_context(self) -> ssl.SSLContext:
        """Build a server context, reading the files now; raises WebConfigError naming the bad field."""
        try:
            return _build_context(self)
        except _FieldProblem as exc:
            raise WebConfigError("web config", [Problem(exc.path, None, exc.message)]) from None


@dataclass(frozen=True)
class WebConfig:
    """What the HTTP server needs: optional TLS, bcrypt basic-auth users, extra response headers."""

    tls: TLSConfig | None = None
    basic_auth_users: Mapping[str, str] = field(default_factory=dict, repr=False)  # user -> bcrypt hash
    headers: Mapping[str, str] = field(default_factory=dict)


# --- the file's shape -----------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _TLSServerModel(_Strict):
    cert_file: str | None = None
    key_file: str | None = None
    client_ca_file: str | None = None
    client_auth_type: ClientAuthType = "NoClientCert"
    min_version: TLSVersionName = "TLS12"
    max_version: TLSVersionName = "TLS13"

    @field_validator("client_auth_type", mode="before")
    @classmethod
    def _verified_client_auth(cls, value: object) -> object:
        if value in _UNVERIFIED_CLIENT_AUTH:
            raise ValueError(
                f"{value} is not supported (client certificates are always verified): "
                "use RequireAndVerifyClientCert or VerifyClientCertIfGiven with client_ca_file")
        return value

    @field_validator("min_version", "max_version", mode="before")
    @classmethod
    def _modern_version(cls, value: object) -> object:
        if value in ("TLS10", "TLS11"):
            raise ValueError(f"{value} is not supported: TLS 1.0 and 1.1 are obsolete, use TLS12 or TLS13")
        return value


class _HTTPServerModel(_Strict):
    headers: dict[str, str] | None = None

    @field_validator("headers")
    @classmethod
    def _allowed_headers(cls, headers: dict[str, str] | None) -> dict[str, str] | None:
        for name, value in (headers or {}).items():
            if name not in ALLOWED_HEADERS:
                raise ValueError(f"header {name!r} cannot be configured; allowed: {', '.join(ALLOWED_HEADERS)}")
            allowed = ALLOWED_HEADERS[name]
            if allowed and value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)} (got {value!r})")
        return headers


class _WebConfigModel(_Strict):
    tls_server_config: _TLSServerModel | None = None
    http_server_config: _HTTPServerModel | None = None
    basic_auth_users: dict[str, str] | None = None


# RFC 9110 token characters, the only ones a header name may hold.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def header_problems(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """(header name, why) for every header that cannot be sent as is: checked at load, never at reply."""
    problems = []
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name):
            problems.append((name, "a header name must be an HTTP token (letters, digits, '-' and the like)"))
            continue
        for position, char in enumerate(value, start=1):
            if char in "\r\n":
                problems.append((name, "a header value cannot contain a line break"))
                break
            if ord(char) > 0xFF or (ord(char) < 0x20 and char != "\t") or ord(char) == 0x7F:
                # The typical case is a typographic quote pasted from a document.
                problems.append((name, f"character {char!r} (U+{ord(char):04X}) at position {position} cannot be "
                                       "sent in an HTTP header (only latin-1 text): replace it, for a quote "
                                       "use a plain ' or \""))
                break
    return problems


def _check_users(users: Mapping[str, str]) -> list[_FieldProblem]:
    problems = []
    for user, hashed in users.items():
        path: Path_ = ("basic_auth_users", user)
        if not user or ":" in user:
            problems.append(_FieldProblem(path, "a user name must be non-empty and cannot contain ':'"))
        elif not _BCRYPT_HASH.fullmatch(hashed):
            # Never echo the value: it is a secret.
            problems.append(_FieldProblem(
                path, "expected a bcrypt hash such as $2y$10$ followed by 53 characters "
                      "(make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n')"))
    return problems


# --- files and the TLS context --------------------------------------------------------------------


def _build_context(tls: TLSConfig) -> ssl.SSLContext:
    section = ("tls_server_config",)
    if tls.client_auth_type == "NoClientCert" and tls.client_ca_file is not None:
        raise _FieldProblem(section + ("client_ca_file",),
                            "client_ca_file is set but client_auth_type is NoClientCert: "
                            "set client_auth_type to RequireAndVerifyClientCert")
    if tls.client_auth_type != "NoClientCert" and tls.client_ca_file is None:
        raise _FieldProblem(section + ("client_ca_file",),
                            f"client_auth_type {tls.client_auth_type} needs client_ca_file, "
                            "the CA that signs the client certificates")
    if _TLS_VERSIONS[tls.min_version] > _TLS_VERSIONS[tls.max_version]:
        raise _FieldProblem(section + ("min_version",), f"{tls.min_version} is above max_version {tls.max_version}")

    _readable(tls.cert_file, section + ("cert_file",))
    _readable(tls.key_file, section + ("key_file",))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _TLS_VERSIONS[tls.min_version]
    context.maximum_version = _TLS_VERSIONS[tls.max_version]
    try:
        # Parse the certificate alone first so that a bad one is not blamed on the key.
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=str(tls.cert_file))
    except ssl.SSLError:
        raise _FieldProblem(section + ("cert_file",),
                            f"{tls.cert_file} holds no PEM certificate") from None
    try:
        # An empty password makes an encrypted key fail instead of prompting on the terminal.
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file), password=b"")
    except ssl.SSLError as exc:
        raise _FieldProblem(*_key_problem(tls, exc.reason)) from None

    context.verify_mode = _VERIFY_MODES[tls.client_auth_type]
    if tls.client_ca_file is not None:
        _readable(tls.client_ca_file, section + ("client_ca_file",))
        try:
            context.load_verify_locations(cafile=str(tls.client_ca_file))
        except ssl.SSLError:
            raise _FieldProblem(section + ("client_ca_file",),
                                f"{tls.client_ca_file} holds no PEM CA certificate") from None
    return context


def _key_problem(tls: TLSConfig, reason: str | None) -> tuple[Path_, str]:
    section = ("tls_server_config",)
    if reason == "KEY_VALUES_MISMATCH":
        return section + ("key_file",), f"{tls.key_file} is not the private key of cert_file {tls.cert_file}"
    if reason == "EE_KEY_TOO_SMALL":
        return section + ("key_file",), (
            f"the key in {tls.key_file} is too small for the TLS library's security level: RSA and DSA keys "
            "need at least 2048 bits (3072 recommended), EC keys at least 224 bits; make a new key and "
            "certificate, e.g. openssl req -x509 -newkey rsa:3072 ...")
    if reason == "CA_MD_TOO_WEAK":
        return section + ("cert_file",), (
            f"{tls.cert_file} is signed with a digest too weak for the TLS library (MD5 or SHA-1): "
            "reissue it signed with SHA-256")
    return section + ("key_file",), f"{tls.key_file} is not an unencrypted PEM private key matching cert_file"


def _readable(path: Path, where: Path_) -> None:
    if not path.is_file():
        raise _FieldProblem(where, f"file not found: {path}")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise _FieldProblem(where, f"cannot read {path}: {exc.strerror}") from None


# --- loading --------------------------------------------------------------------------------------


def _pydantic_problems(exc: ValidationError, located: Located) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        path = tuple(err["loc"])
        kind = err["type"]
        message = err["msg"].removeprefix("Value error, ")
        if kind == "extra_forbidden":
            key = str(path[-1])
            message = _NOT_SUPPORTED.get(key, "unknown field (check the spelling)")
        elif (kind != "value_error" and "basic_auth_users" not in path
              and isinstance(err.get("input"), (str, int, float, bool))):
            message += f" (got {err['input']!r})"
        problems.append(Problem(path, located.line_of(path), message))
    return problems


def _resolve(base_dir: Path, name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else base_dir / path


def load_web_config(path: Path) -> WebConfig:
    """Read and check a web config file, including the certificate and key files it names."""
    file = str(path)
    text = read_text(path, WebConfigError)
    try:
        located = read_yaml(text)
    except YamlProblem as exc:
        raise WebConfigError(file, [Problem(exc.path, exc.line, exc.message)]) from None
    data = located.data if located.data is not None else {}
    if not isinstance(data, dict):
        raise WebConfigError(file, [Problem((), 1, "expected a mapping of settings at the top level")])
    try:
        model = _WebConfigModel.model_validate(data)
    except ValidationError as exc:
        raise WebConfigError(file, _pydantic_problems(exc, located)) from None

    def problem(found: _FieldProblem) -> Problem:
        return Problem(found.path, located.line_of(found.path), found.message)

    users = dict(model.basic_auth_users or {})
    user_problems = _check_users(users)
    if user_problems:
        raise WebConfigError(file, [problem(found) for found in user_problems])

    tls = None
    section = model.tls_server_config
    if section is not None and section.model_fields_set:
        base_dir = path.parent.resolve()
        if section.cert_file is None or section.key_file is None:
            raise WebConfigError(file, [
                problem(_FieldProblem(("tls_server_config", name), "required when TLS is configured"))
                for name in ("cert_file", "key_file") if getattr(section, name) is None])
        tls = TLSConfig(
            cert_file=_resolve(base_dir, section.cert_file),
            key_file=_resolve(base_dir, section.key_file),
            client_ca_file=_resolve(base_dir, section.client_ca_file) if section.client_ca_file else None,
            client_auth_type=section.client_auth_type,
            min_version=section.min_version,
            max_version=section.max_version,
        )
        try:
            _build_context(tls)
        except _FieldProblem as exc:
            raise WebConfigError(file, [problem(exc)]) from None

    headers = (model.http_server_config.headers if model.http_server_config else None) or {}
    bad_headers = header_problems(headers)
    if bad_headers:
        raise WebConfigError(file, [problem(_FieldProblem(("http_server_config", "headers", name), why))
                                    for name, why in bad_headers])
    return WebConfig(tls=tls, basic_auth_users=users, headers=dict(headers))
