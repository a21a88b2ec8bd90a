"""batch-exporter installed from a wheel, away from any checkout: the shipped files come with it.

A copy of the checkout is built as a release would be (`python -m build`: an sdist, then a wheel from
that sdist), the wheel installed with its dependencies into a fresh venv, and every command runs from
a folder that is not a checkout. Needs the package index (pip) for `build`, setuptools and the
dependencies; promtool, prometheus and prometheus-alertmanager (`make system-deps`) for the drills
and `demo --stack`.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from process_tree import alive, children_of, reaped
from promstack import REPO_ROOT, wait_until

pytestmark = pytest.mark.slow

# what the package must carry, as the repository lays it out
SHIPPED = ("alerts/*.rules.yml", "alerts/alertmanager.yml", "alerts/runbooks/*.md",
           "deploy/prometheus/prometheus.yml", "dashboards/*.json")
# not part of a build, and some large or owned by running tools
NOT_COPIED = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
                                    ".hypothesis", "demo-data", "out")


@dataclass(frozen=True)
class Installed:
    venv: Path
    elsewhere: Path  # the working folder of every command: not a checkout
    env: dict[str, str]

    def run(self, *argv: str, timeout: float = 200) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, cwd=self.elsewhere, env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)

    def batch_exporter(self, *args: str, timeout: float = 200) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.venv / "bin" / "batch-exporter"), *args, timeout=timeout)


def _checked(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, f"{done.args}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(REPO_ROOT, source, ignore=NOT_COPIED)  # building writes egg-info; never into the checkout
    venv = work / "venv"
    python = str(venv / "bin" / "python")
    pip_env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    pip_env.pop("PYTHONPATH", None)

    def pip(*args: str) -> None:
        _checked(subprocess.run([python, "-m", "pip", "install", "-q", *args], env=pip_env, capture_output=True,
                                text=True, timeout=300, check=False))

    _checked(subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True,
                            timeout=120, check=False))
    build_requires = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["build-system"]
    pip("build", *build_requires["requires"])
    dist = work / "dist"
    # sdist first, then the wheel from the unpacked sdist: what MANIFEST.in leaves out is missing here
    _checked(subprocess.run([python, "-m", "build", "--no-isolation", "--outdir", str(dist), str(source)],
                            env=pip_env, capture_output=True, text=True, timeout=300, check=False))
    wheels = list(dist.glob("*.whl"))
    assert len(wheels) == 1, wheels
    pip(str(wheels[0]))

    elsewhere = work / "elsewhere"
    (elsewhere / "tmp").mkdir(parents=True)
    env = {**pip_env, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
           "TMPDIR": str(elsewhere / "tmp")}
    return Installed(venv, elsewhere, env)


def _needs(*names: str) -> None:
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not on PATH (make system-deps installs them)")


def _repository_files() -> dict[str, bytes]:
    return {path.relative_to(REPO_ROOT).as_posix(): path.read_bytes()
            for pattern in SHIPPED for path in sorted(REPO_ROOT.glob(pattern))}


def test_the_installed_package_carries_the_shipped_files_byte_for_byte(installed: Installed) -> None:
    done = _checked(installed.run(
        str(installed.venv / "bin" / "python"), "-c",
        "import importlib.resources, json, batch_exporter\n"
        "from batch_exporter.practice.stack import ShippedFiles\n"
        "found = ShippedFiles.locate()\n"
        "print(json.dumps({'package': batch_exporter.__file__,\n"
        "                  'shipped': str(importlib.resources.files('batch_exporter') / 'shipped'),\n"
        "                  'rules': [str(p) for p in found.rules],\n"
        "                  'prometheus': str(found.prometheus_config),\n"
        "                  'alertmanager': str(found.alertmanager_config)}))"))
    where = json.loads(done.stdout)
    assert Path(where["package"]).is_relative_to(installed.venv), where  # not the checkout's package
    shipped = Path(where["shipped"])
    packaged = {path.relative_to(shipped).as_posix(): path.read_bytes()
                for path in sorted(shipped.rglob("*")) if path.is_file()}
    repository = _repository_files()
    assert any(name.endswith(".rules.yml") for name in repository)
    assert any(name.startswith("dashboards/") for name in repository)
    assert sorted(packaged) == sorted(repository)
    assert [name for name in repository if packaged[name] != repository[name]] == []
    # and the stack finds that copy on its own
    assert where["rules"] == [str(shipped / name) for name in sorted(repository) if name.endswith(".rules.yml")]
    assert where["prometheus"] == str(shipped / "deploy/prometheus/prometheus.yml")
    assert where["alertmanager"] == str(shipped / "alerts/alertmanager.yml")


def test_the_promtool_drill_runs_from_the_wheel(installed: Installed) -> None:
    _needs("promtool")
    done = installed.batch_exporter("drill", "failed-run", "--promtool-only")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "result: OK" in done.stdout, done.stdout


def test_the_live_drill_runs_from_the_wheel(installed: Installed) -> None:
    _needs("prometheus", "promtool")
    if shutil.which("prometheus-alertmanager") is None and shutil.which("alertmanager") is None:
        pytest.skip("prometheus-alertmanager not on PATH (make system-deps installs it)")
    done = installed.batch_exporter("drill", "failed-run")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "result: OK" in done.stdout, done.stdout


def _rule_groups(prometheus: str) -> list[str]:
    try:
        with urllib.request.urlopen(f"{prometheus}/api/v1/rules", timeout=5) as answer:
            return [group["name"] for group in json.load(answer)["data"]["groups"]]
    except OSError:
        return []


def _banner(proc: subprocess.Popen[str]) -> Iterator[str]:
    assert proc.stdout is not None
    while line := proc.stdout.readline():
        yield line


def test_demo_stack_loads_the_packaged_rules_and_stops_cleanly(installed: Installed) -> None:
    _needs("prometheus")
    if shutil.which("prometheus-alertmanager") is None and shutil.which("alertmanager") is None:
        pytest.skip("prometheus-alertmanager not on PATH (make system-deps installs it)")
    shipped_groups = sorted(
        group["name"] for path in sorted(REPO_ROOT.glob("alerts/*.rules.yml"))
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"])
    proc = subprocess.Popen(
        [str(installed.venv / "bin" / "batch-exporter"), "demo", "--stack", "--dir", "demo",
         "--web.listen-address", "127.0.0.1:0"],
        cwd=installed.elsewhere, env=installed.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    banner = ""
    with reaped(proc) as servers:
        # up to the exporter's "serving on": it has then taken SIGTERM over, and stops with exit 0
        for line in _banner(proc):
            banner += line
            if "Alertmanager  http" in banner and " serving on " in line:
                break
        found: dict[str, Any] = dict(re.findall(r"^\s+(Prometheus)\s+(http://[\d.:]+)", banner, re.MULTILINE))
        rules_from = re.search(r"\(rules from (\S+)\)", banner)
        assert "Prometheus" in found and rules_from is not None, banner
        assert Path(rules_from[1]).is_relative_to(installed.venv), banner  # the packaged copy
        prometheus = found["Prometheus"]
        wait_until(lambda: sorted(_rule_groups(prometheus)) == shipped_groups, timeout=30,
                   what=f"Prometheus to load the rule groups {shipped_groups}")
        servers |= children_of(proc.pid)
        assert len(servers) == 2, banner  # Prometheus and Alertmanager
        proc.send_signal(signal.SIGTERM)
        output = banner + proc.communicate(timeout=60)[0]
        survivors = [pid for pid in servers if alive(pid)]

    assert proc.returncode == 0, output
    assert survivors == [], output
    assert "Traceback" not in output, output
