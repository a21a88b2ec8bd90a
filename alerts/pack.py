"""The alert pack's parameters (alerts/pack.yml), read and checked; used by alerts/generate.py and
dashboards/generate.py, which render the rules, the PrometheusRule and the dashboards from them."""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

DEFAULTS_FILE = Path(__file__).resolve().parent / "pack.yml"
# one or more matchers as Prometheus writes them inside braces: name op "value"
_MATCHER = r'\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*'
_SELECTOR = re.compile(rf"{_MATCHER}(,{_MATCHER})*,?\s*")


class PackError(ValueError):
    """A parameter file that cannot be used: the message names the file and the key."""


@dataclass(frozen=True)
class Pack:
    job_selector: str
    runbook_base_url: str
    config_path: str
    log_size_warning_ratio: float
    log_size_critical_ratio: float

    def runbook(self, alertname: str) -> str:
        return f"{self.runbook_base_url}/{alertname}.md"

    @property
    def rerun_check(self) -> str:
        return f"batch-exporter rerun-check -c {self.config_path}"


def load_pack(path: Path | None = None) -> Pack:
    """The defaults of alerts/pack.yml, with the keys of `path` (if given) laid over them."""
    values = _read(DEFAULTS_FILE)
    if path is not None:
        values.update(_read(path))
        source = path
    else:
        source = DEFAULTS_FILE
    return _checked(values, source)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PackError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise PackError(f"{path}: not YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PackError(f"{path}: expected a mapping of parameters, got {type(data).__name__}")
    known = {f.name for f in fields(Pack)}
    for key in data:
        if key not in known:
            raise PackError(f"{path}: {key}: unknown parameter (known: {', '.join(sorted(known))})")
    return dict(data)


def _checked(values: dict[str, Any], path: Path) -> Pack:
    def text(key: str) -> str:
        value = values[key]
        if not isinstance(value, str) or not value.strip():
            raise PackError(f"{path}: {key}: expected a non-empty string, got {value!r}")
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise PackError(f"{path}: {key}: line breaks, tabs and other control characters are not allowed, "
                            f"got {value!r}")
        return value.strip()

    def ratio(key: str) -> float:
        value = values[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
            raise PackError(f"{path}: {key}: expected a number between 0 and 1 (exclusive), got {value!r}")
        return float(value)

    selector = text("job_selector")
    if not _SELECTOR.fullmatch(selector):
        raise PackError(f"{path}: job_selector: expected label matchers as inside up{{...}}, such as "
                        f'job="batch-exporter", got {selector!r}')
    base = text("runbook_base_url").rstrip("/")
    if not re.match(r"https?://[^\s/]+", base) or any(c in base for c in " \"'{}<>"):
        raise PackError(f"{path}: runbook_base_url: expected an http(s) URL without spaces, quotes or "
                        f"braces, got {base!r}")
    config_path = text("config_path")
    if any(c in config_path for c in "`\"{}\n"):
        raise PackError(f"{path}: config_path: backquotes, double quotes, braces and line breaks are not "
                        f"allowed (it is shown inside alert templates), got {config_path!r}")
    warning, critical = ratio("log_size_warning_ratio"), ratio("log_size_critical_ratio")
    if warning >= critical:
        raise PackError(f"{path}: log_size_warning_ratio ({warning}) must be below log_size_critical_ratio "
                        f"({critical})")
    return Pack(job_selector=selector, runbook_base_url=base, config_path=config_path,
                log_size_warning_ratio=warning, log_size_critical_ratio=critical)


def substitutions(pack: Pack) -> dict[str, str]:
    """The [[name]] placeholders of alerts/src/ and their text."""
    return {
        "job_selector": pack.job_selector,
        "runbook_base_url": pack.runbook_base_url,
        "config_path": pack.config_path,
        "log_size_warning_ratio": f"{pack.log_size_warning_ratio:g}",
        "log_size_critical_ratio": f"{pack.log_size_critical_ratio:g}",
    }


_PLACEHOLDER = re.compile(r"\[\[([a-z_]+)\]\]")


def fill(template: str, pack: Pack, source: str) -> str:
    """`template` with every [[name]] replaced; an unknown name is an error naming its line."""
    values = substitutions(pack)

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            line = template.count("\n", 0, match.start()) + 1
            raise PackError(f"{source}:{line}: unknown placeholder [[{name}]]")
        return values[name]

    return _PLACEHOLDER.sub(replace, template)
