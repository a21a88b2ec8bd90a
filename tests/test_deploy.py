"""The deployment kit: every file under deploy/ and the Containerfile, checked by the tool that owns
its format where one is installed here, and against each other (paths, ports, names, versions)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dockerfile
import kubernetes_validate
import pytest
import yaml

from batch_exporter import __version__
from batch_exporter.config import Config, load_config
from batch_exporter.web import DEFAULT_PORT
from batch_exporter.webconfig import load_web_config
from exporter_process import ExporterProcess, free_port, running_exporter
from tls_material import make_material, openssl_available

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
SYSTEMD = DEPLOY / "systemd"
WINDOWS = DEPLOY / "windows"
KUBE = DEPLOY / "kubernetes"
EXAMPLES = REPO / "docs" / "examples"
PROBE_PATHS = {"/-/healthy", "/-/ready"}
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

sys.path.insert(0, str(KUBE))
import generate_prometheusrule  # noqa: E402


def _check_config(path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "batch_exporter.cli", "check-config", "-c", str(path)],
                          capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})


def _references(text: str) -> set[str]:
    """${VAR} names used by a configuration text (comments included: they show alternatives)."""
    return set(_REFERENCE.findall(text))


def _dummy_env(names: set[str]) -> dict[str, str]:
    return {name: f"dummy-{name.lower()}" for name in names}


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExporterProcess]:
    """A real exporter process (SQLite, one check) for probes and the container health check."""
    folder = tmp_path_factory.mktemp("exporter")
    config = folder / "config.yml"
    config.write_text(
        f"databases:\n  db: {{sqlite: '{folder / 'empty.db'}'}}\n"
        "batches:\n  b:\n    database: db\n    checks: {one: {query: 'SELECT 1', max: 1}}\n")
    import sqlite3
    sqlite3.connect(folder / "empty.db").close()
    with running_exporter(config, folder) as process:
        process.wait_for(lambda s: True, what="a first scrape")
        yield process


# --- every YAML / JSON file under deploy/ ------------------------------------------------------------

DATA_FILES = sorted(p for ext in ("*.yml", "*.yaml", "*.json") for p in DEPLOY.rglob(ext))


def test_deploy_has_data_files() -> None:
    names = {p.relative_to(DEPLOY).as_posix() for p in DATA_FILES}
    assert {"kubernetes/deployment.yaml", "windows/config.yml", "systemd/web-config.yml"} <= names


@pytest.mark.parametrize("path", DATA_FILES, ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_every_yaml_and_json_file_parses(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        json.loads(text)
    else:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
        assert documents, f"{path} holds no YAML document"


# --- systemd ---------------------------------------------------------------------------------------

UNIT = SYSTEMD / "batch-exporter.service"
ENV_FILE = SYSTEMD / "batch-exporter.env"
INSTALLED_BINARY = "/opt/batch-exporter/bin/batch-exporter"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """systemd unit syntax: sections, repeatable keys, `\\` line continuation, # and ; comments."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"directive outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a Key=value line: {line!r}"
        current.setdefault(key.strip(), []).append(" ".join(value.split()))
    return sections


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text(encoding="utf-8"))


def _env_file() -> dict[str, str]:
    values: dict[str, str] = {}
    for number, line in enumerate(ENV_FILE.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), f"{ENV_FILE}:{number}: not VAR=value"
        values[key] = value
    return values


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify insists that ExecStart's program exists: point the install prefix at this checkout's
    # venv, the only change made to the unit
    installed = Path(sys.executable).with_name("batch-exporter")
    assert installed.exists(), "the package must be installed in the test interpreter's environment"
    text = UNIT.read_text(encoding="utf-8")
    assert INSTALLED_BINARY in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(INSTALLED_BINARY, str(installed)), encoding="utf-8")
    result = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # unknown or misspelt directives are only warnings (exit 0): there must be none
    assert result.stderr.strip() == "", result.stderr


def test_unit_hardening(unit: dict[str, dict[str, list[str]]]) -> None:
    service = unit["Service"]

    def one(key: str) -> str:
        assert key in service, f"[Service] has no {key}="
        return service[key][-1]

    assert one("User") == "batch-exporter" and one("Group") == "batch-exporter"
    assert one("NoNewPrivileges") == "yes"
    assert one("ProtectSystem") == "strict"
    assert one("ProtectHome") in ("yes", "read-only", "tmpfs")
    assert one("PrivateTmp") == "yes"
    assert one("Restart") == "on-failure"
    assert one("CapabilityBoundingSet") == ""
    assert one("StateDirectory") == "batch-exporter"
    assert one("ReadOnlyPaths")
    assert service["ExecReload"][-1] == "/bin/kill -HUP $MAINPID"
    assert service["ExecReload"][0].startswith(f"{INSTALLED_BINARY} check-config ")
    assert one("EnvironmentFile").lstrip("-") == "/etc/batch-exporter/batch-exporter.env"
    start = one("ExecStart")
    assert start.startswith(f"{INSTALLED_BINARY} run ")
    assert "--config.file=/etc/batch-exporter/config.yml" in start
    assert f"--web.listen-address=:{DEFAULT_PORT}" in start
    assert "--config.file=/etc/batch-exporter/config.yml" in service["ExecReload"][0]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def _example_configs() -> list[Path]:
    return sorted(EXAMPLES.glob("*.yml"))


def _load_example(path: Path) -> Config:
    return load_config(path, env=_dummy_env(_references(path.read_text(encoding="utf-8"))))


def test_unit_paths_cover_the_linux_example_configs(unit: dict[str, dict[str, list[str]]]) -> None:
    service = unit["Service"]
    state_dir = "/var/lib/" + service["StateDirectory"][-1]
    read_only = [p.lstrip("-") for value in service["ReadOnlyPaths"] for p in value.split()]
    configs = _example_configs()
    assert configs
    for path in configs:
        config = _load_example(path)
        assert config.global_.state_dir in (None, state_dir), f"{path}: state_dir is not the StateDirectory"
        for batch in config.batches.values():
            for log in batch.logs.values():
                assert any(log.path.startswith(folder.rstrip("/") + "/") for folder in read_only), (
                    f"{path}: log {log.path} is outside the unit's ReadOnlyPaths {read_only}")


def test_env_file_defines_what_the_unit_and_configs_use(unit: dict[str, dict[str, list[str]]]) -> None:
    defined = set(_env_file())
    used_by_unit = set(re.findall(r"\$([A-Z_][A-Z0-9_]*)", unit["Service"]["ExecStart"][-1]))
    assert used_by_unit <= defined
    for path in _example_configs():
        missing = _references(path.read_text(encoding="utf-8")) - defined
        assert not missing, f"{path} uses ${{{missing}}} that {ENV_FILE.name} does not define"


@pytest.mark.skipif(not openssl_available(), reason="openssl is needed to make TLS material")
def test_web_config_passes_promtool_and_the_exporter(tmp_path: Path) -> None:
    copy = tmp_path / "web-config.yml"
    shutil.copy(SYSTEMD / "web-config.yml", copy)
    material = make_material(tmp_path / "material")
    (tmp_path / "tls").mkdir()
    shutil.copy(material.server_cert, tmp_path / "tls" / "server.crt")
    shutil.copy(material.server_key, tmp_path / "tls" / "server.key")
    if shutil.which("promtool"):
        result = subprocess.run(["promtool", "check", "web-config", str(copy)], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
    web = load_web_config(copy)
    assert web.tls is not None and set(web.basic_auth_users) == {"prometheus"}


# --- Windows ---------------------------------------------------------------------------------------

WINDOWS_CONFIG = WINDOWS / "config.yml"
_WINDOWS_PATH = re.compile(r"^[A-Za-z]:\\")


def test_windows_config_validates_on_linux() -> None:
    result = _check_config(WINDOWS_CONFIG)
    assert result.returncode == 0, result.stderr
    config = load_config(WINDOWS_CONFIG, env={})
    assert config.global_.state_dir and _WINDOWS_PATH.match(config.global_.state_dir)
    logs = [log for batch in config.batches.values() for log in batch.logs.values()]
    assert logs and all(_WINDOWS_PATH.match(log.path) for log in logs)
    assert any("*" in log.path for log in logs), "the example shows a glob on a Windows path"
    odbc = config.databases["payments"].odbc or ""
    assert "Driver={ODBC Driver 18 for SQL Server}" in odbc
    assert "ApplicationIntent=ReadOnly" in odbc


def test_winsw_service_definition() -> None:
    root = ET.parse(WINDOWS / "batch-exporter-service.xml").getroot()
    assert root.tag == "service"
    assert root.findtext("id") == "batch-exporter"
    assert (root.findtext("executable") or "").endswith(r"\venv\Scripts\batch-exporter.exe")
    arguments = (root.findtext("arguments") or "").split()
    assert arguments[0] == "run"
    assert r"--config.file=C:\ProgramData\batch-exporter\config.yml" in arguments
    assert f"--web.listen-address=:{DEFAULT_PORT}" in arguments
    assert [e.get("action") for e in root.findall("onfailure")] == ["restart", "restart"]
    assert root.find("log") is not None and root.find("log").get("mode") == "roll-by-size"  # type: ignore[union-attr]
    readme = (WINDOWS / "README.md").read_text(encoding="utf-8")
    state_dir = load_config(WINDOWS_CONFIG, env={}).global_.state_dir
    for path in (r"C:\ProgramData\batch-exporter\config.yml", root.findtext("logpath"), state_dir):
        assert path and path in readme, f"deploy/windows/README.md does not mention {path}"


# --- Containerfile ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def containerfile() -> list[dockerfile.Command]:
    return list(dockerfile.parse_file(str(REPO / "Containerfile")))


def _final_stage(commands: list[dockerfile.Command]) -> list[dockerfile.Command]:
    last_from = max(i for i, c in enumerate(commands) if c.cmd == "FROM")
    return commands[last_from:]


def test_containerfile_structure(containerfile: list[dockerfile.Command]) -> None:
    stages = [c for c in containerfile if c.cmd == "FROM"]
    assert all(c.value[0].startswith("python:3.11-slim") for c in stages)
    final = _final_stage(containerfile)
    by_cmd: dict[str, list[dockerfile.Command]] = {}
    for c in final:
        by_cmd.setdefault(c.cmd, []).append(c)
    runs = " ".join(" ".join(c.value) for c in by_cmd["RUN"])
    assert "unixodbc" in runs
    assert "[odbc]" in runs
    user = by_cmd["USER"][-1].value[0]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "a numeric non-root user lets Kubernetes check runAsNonRoot"
    assert by_cmd["EXPOSE"][-1].value == (str(DEFAULT_PORT),)
    assert by_cmd["ENTRYPOINT"][-1].value == ("batch-exporter",)
    cmd = by_cmd["CMD"][-1].value
    assert cmd[0] == "run" and any(a.startswith("--config.file=") for a in cmd)


def test_containerfile_matches_the_package(containerfile: list[dockerfile.Command]) -> None:
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^odbc = \["pyodbc', pyproject, re.M), "the [odbc] extra the image installs"
    assert re.search(r'^batch-exporter = "batch_exporter.cli:main"', pyproject, re.M)
    assert re.search(r'^name = "batch-exporter"', pyproject, re.M), "the wheel is batch_exporter-*.whl"
    for command in containerfile:
        if command.cmd == "COPY" and not any(f.startswith("--from=") for f in command.flags):
            for source in command.value[:-1]:
                assert (REPO / source).exists(), f"Containerfile copies {source}, which does not exist"


def test_containerfile_healthcheck_runs_against_a_real_exporter(
        containerfile: list[dockerfile.Command], exporter: ExporterProcess) -> None:
    check = next(c for c in _final_stage(containerfile) if c.cmd == "HEALTHCHECK")
    assert check.json and check.value[0] == "CMD"
    argv = list(check.value[1:])
    assert argv == ["batch-exporter", "healthcheck"]

    def run(port: int) -> int:
        local = [sys.executable, "-m", "batch_exporter.cli", *argv[1:], f"--web.listen-address=127.0.0.1:{port}"]
        return subprocess.run(local, capture_output=True, timeout=30).returncode

    assert run(exporter.port) == 0
    assert run(free_port()) != 0, "the health check must fail when nothing answers"


# --- Kubernetes ------------------------------------------------------------------------------------

def _manifest(name: str) -> dict[str, Any]:
    return yaml.safe_load((KUBE / name).read_text(encoding="utf-8"))


MANIFESTS = sorted(p.name for p in KUBE.glob("*.yaml") if p.name != "kustomization.yaml")
CORE_KINDS = {"Deployment", "Service", "ConfigMap", "Secret"}


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_has_kind_and_metadata(name: str) -> None:
    doc = _manifest(name)
    assert doc["apiVersion"] and doc["kind"]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", doc["metadata"]["name"])
    assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "batch-exporter"
    if doc["kind"] in CORE_KINDS:
        # the official OpenAPI schemas, strict: unknown fields are errors
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    else:
        assert doc["apiVersion"] == "monitoring.coreos.com/v1"
        assert doc["kind"] in ("ServiceMonitor", "PrometheusRule")


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    kustomization = _manifest("kustomization.yaml")
    assert sorted(kustomization["resources"]) == sorted(m for m in MANIFESTS if m != "secret.example.yaml")
    images = {i["name"]: i for i in kustomization["images"]}
    assert images["batch-exporter"]["newTag"] == __version__


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_renders_offline() -> None:
    result = subprocess.run(["kubectl", "kustomize", str(KUBE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(result.stdout))
    assert kinds == ["ConfigMap", "Deployment", "PrometheusRule", "Service", "ServiceMonitor"]
    assert f"registry.example.com/batch-exporter:{__version__}" in result.stdout


@pytest.fixture(scope="module")
def pod() -> dict[str, Any]:
    return _manifest("deployment.yaml")["spec"]["template"]


def _container(pod: dict[str, Any]) -> dict[str, Any]:
    containers = pod["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def test_deployment_runs_the_exporter_hardened(pod: dict[str, Any]) -> None:
    deployment = _manifest("deployment.yaml")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    container = _container(pod)
    assert container["image"] == f"batch-exporter:{__version__}"
    assert container["args"][0] == "run"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http-metrics": DEFAULT_PORT}
    assert f"--web.listen-address=:{DEFAULT_PORT}" in container["args"]


def test_pod_user_is_the_image_user(pod: dict[str, Any], containerfile: list[dockerfile.Command]) -> None:
    user = next(c for c in reversed(_final_stage(containerfile)) if c.cmd == "USER").value[0]
    uid, _, gid = user.partition(":")
    context = pod["spec"]["securityContext"]
    assert (str(context["runAsUser"]), str(context["runAsGroup"])) == (uid, gid or uid)


def _answers_200(exporter: ExporterProcess, path: str, timeout: float = 20) -> bool:
    """/-/ready answers 503 until every source has finished its first poll: allow for that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if exporter.get(path)[0] == 200:
            return True
        time.sleep(0.2)
    return False


def test_probes_point_at_paths_the_exporter_serves(pod: dict[str, Any], exporter: ExporterProcess) -> None:
    container = _container(pod)
    port_names = {p["name"] for p in container["ports"]}
    probes = {kind: container[kind]["httpGet"] for kind in ("livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/-/healthy"
    assert probes["readinessProbe"]["path"] == "/-/ready"
    for probe in probes.values():
        assert probe["port"] in port_names
        assert _answers_200(exporter, probe["path"]), f"{probe['path']} never answered 200"
    assert exporter.get("/-/nonexistent")[0] == 404, "a wrong path would not pass as a probe"


def test_service_and_servicemonitor_reach_the_pod(pod: dict[str, Any]) -> None:
    service = _manifest("service.yaml")
    monitor = _manifest("servicemonitor.yaml")
    container = _container(pod)
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    named_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for port in service["spec"]["ports"]:
        target = port["targetPort"]
        assert target in named_ports or target in named_ports.values()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in service_ports
        assert endpoint.get("path", "/metrics") == "/metrics"


def test_scrape_job_name_matches_what_the_alerts_expect() -> None:
    # Prometheus Operator names the job after the Service (no jobLabel set)
    service = _manifest("service.yaml")
    assert "jobLabel" not in _manifest("servicemonitor.yaml")["spec"]
    rules = " ".join(p.read_text(encoding="utf-8") for p in generate_prometheusrule.rule_files())
    jobs = set(re.findall(r'job="([^"]+)"', rules))
    assert jobs <= {service["metadata"]["name"]}


def test_configmap_config_passes_check_config_with_the_pod_env(pod: dict[str, Any], tmp_path: Path) -> None:
    configmap = _manifest("configmap.yaml")
    container = _container(pod)
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mount = next(m for m in container["volumeMounts"]
                 if volumes[m["name"]].get("configMap", {}).get("name") == configmap["metadata"]["name"])
    config_arg = next(a for a in container["args"] if a.startswith("--config.file="))
    config_path = Path(config_arg.split("=", 1)[1])
    assert config_path.parent == Path(mount["mountPath"])
    text = configmap["data"][config_path.name]

    env_names = {e["name"] for e in container.get("env", [])}
    used = _references(text)
    assert used <= env_names, f"the config uses {used - env_names}, which the container does not set"
    copy = tmp_path / config_path.name
    copy.write_text(text, encoding="utf-8")
    result = _check_config(copy, _dummy_env(env_names))
    assert result.returncode == 0, result.stderr

    secret = _manifest("secret.example.yaml")
    for entry in container.get("env", []):
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["name"] == secret["metadata"]["name"]
            assert ref["key"] in secret["stringData"]


def test_prometheusrule_is_what_the_generator_makes_now() -> None:
    current = (KUBE / "prometheusrule.yaml").read_text(encoding="utf-8")
    assert current == generate_prometheusrule.render(), (
        "deploy/kubernetes/prometheusrule.yaml is out of date: run "
        "python3 deploy/kubernetes/generate_prometheusrule.py")


def test_prometheusrule_groups_equal_the_alert_pack_and_pass_promtool(tmp_path: Path) -> None:
    rule = _manifest("prometheusrule.yaml")
    assert rule["kind"] == "PrometheusRule"
    expected = generate_prometheusrule.load_groups(generate_prometheusrule.rule_files())
    assert rule["spec"]["groups"] == expected
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed")
    extracted = tmp_path / "groups.yml"
    extracted.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    result = subprocess.run(["promtool", "check", "rules", str(extracted)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_generator_check_mode_reports_drift(tmp_path: Path) -> None:
    script = KUBE / "generate_prometheusrule.py"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    # on a copy of the repository layout with one rule changed, --check must fail
    (tmp_path / "alerts").mkdir()
    (tmp_path / "deploy" / "kubernetes").mkdir(parents=True)
    for path in generate_prometheusrule.rule_files():
        shutil.copy(path, tmp_path / "alerts" / path.name)
    shutil.copy(KUBE / "prometheusrule.yaml", tmp_path / "deploy" / "kubernetes" / "prometheusrule.yaml")
    shutil.copy(script, tmp_path / "deploy" / "kubernetes" / script.name)
    copied = tmp_path / "deploy" / "kubernetes" / script.name
    assert subprocess.run([sys.executable, str(copied), "--check"], capture_output=True, timeout=60).returncode == 0
    first = sorted((tmp_path / "alerts").glob("*.rules.yml"))[0]
    first.write_text(first.read_text(encoding="utf-8").replace("for: 5m", "for: 6m", 1), encoding="utf-8")
    drift = subprocess.run([sys.executable, str(copied), "--check"], capture_output=True, text=True, timeout=60)
    assert drift.returncode == 1, drift.stdout + drift.stderr
    assert subprocess.run([sys.executable, str(copied)], capture_output=True, timeout=60).returncode == 0
    assert "for: 6m" in (tmp_path / "deploy" / "kubernetes" / "prometheusrule.yaml").read_text(encoding="utf-8")
