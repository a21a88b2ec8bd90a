"""ruff and mypy, as `make lint` runs them, are part of `make test`: a type error or a lint finding fails CI.

The tools come with the `test` extras (pyproject.toml). Missing tools fail here rather than skip, so that
a venv without them cannot pass silently.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=240)


def _report(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


def test_ruff_finds_nothing() -> None:
    result = _run("ruff", "check", ".")
    assert result.returncode == 0, _report(result)


def test_mypy_finds_nothing_in_the_package() -> None:
    # The files to check and how strictly come from [tool.mypy] in pyproject.toml.
    result = _run("mypy")
    assert result.returncode == 0, _report(result)


@pytest.fixture(scope="module")
def sample_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mypy cache for the samples below, apart from the project's, so the standard library is read once."""
    return tmp_path_factory.mktemp("mypy-cache")


@pytest.mark.parametrize(
    ("source", "code"),
    [
        ("def untyped(x):\n    return x\n", "no-untyped-def"),
        ("x: int = 1  # type: ignore[assignment]\n", "unused-ignore"),
        ("x: int = 'one'  # type: ignore\n", "ignore-without-code"),
    ],
)
def test_mypy_configuration_is_strict(tmp_path: Path, sample_cache: Path, source: str, code: str) -> None:
    # Guards the configuration itself: a loosened [tool.mypy] would let the check above pass vacuously.
    module = tmp_path / "sample.py"
    module.write_text(source)
    result = _run("mypy", "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(sample_cache), str(module))
    assert result.returncode == 1 and f"[{code}]" in result.stdout, _report(result)
