"""The status page served: the real exporter's service behind MetricsServer, with TLS and basic auth as
/metrics, rendered once per change of the snapshots; and in a real browser (Debian's chromium driven by
playwright) on the demo's data, as the exporter process serves it."""
from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import bcrypt
import pytest

from batch_exporter.config import load_config
from batch_exporter.practice.demo import create_demo, demo_config_text
from batch_exporter.service import ExporterService
from batch_exporter.snapshot import SampleBuilder
from batch_exporter.web import MetricsServer
from batch_exporter.webconfig import WebConfig
from exporter_process import running_exporter
from status_browser import FAILING, HEALTHY, browser_missing, chromium, demo_with_a_bad_night, now_utc, wait_until_ready
from test_web import basic, client_context, request, tls_config
from tls_material import TLSMaterial, make_material, openssl_available

pytestmark = pytest.mark.timeout(120)

NOW = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
PASSWORD = "night shift"


class Clock:
    def __init__(self) -> None:
        self.now = NOW.timestamp()

    def __call__(self) -> float:
        self.now += 1.0  # every render sees a later instant: a re-render would show in the bytes
        return self.now


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ExporterService]:
    paths = create_demo(tmp_path / "demo", now=NOW)
    paths.config.write_text(demo_config_text(paths.folder), encoding="utf-8")
    service = ExporterService(load_config(paths.config), config_path=paths.config, keep_log_state=False,
                              clock=Clock())
    service.poll_once()
    yield service
    service.stop()


def test_the_page_and_its_json_are_rendered_once_per_change_of_the_snapshots(service: ExporterService) -> None:
    page, data = service.status_page(), service.status_json()
    assert service.status_page() is page and service.status_json() is data  # no re-render: same bytes
    store = service.exporter.store
    builder = SampleBuilder()
    builder.add("batch_run_attempts", 2, batch=FAILING)
    store.record_success(builder.build("extra:test"), NOW.timestamp(), 0.0)
    changed = service.status_page()
    assert changed != page and service.status_json() != data
    assert service.status_page() is changed
    store.record_failure("runs:card-authorization", "connect", 0.1, message="database unreachable", at=NOW.timestamp())
    down = json.loads(service.status_json())
    [runs] = [s for b in down["batches"] for s in b["sources"] if s["source"] == "runs:card-authorization"]
    assert runs["state"] == "down (connect)" and runs["message"] == "database unreachable"


def test_json_and_page_say_the_same(service: ExporterService) -> None:
    data = json.loads(service.status_json())
    page = service.status_page().decode()
    assert data["config"] == str(service.config_path)
    assert {b["batch"] for b in data["batches"]} == {FAILING, HEALTHY}
    for batch in data["batches"]:
        assert batch["time_zone"] == "Asia/Tokyo"
        assert batch["rerun_check"] == f"batch-exporter rerun-check -c {service.config_path} {batch['batch']}"
        assert batch["rerun_check"] in page
        for condition in batch["conditions"]:
            assert condition["runbook_url"] in page


@pytest.fixture(scope="module")
def password_hash() -> str:
    return bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


@pytest.mark.skipif(not openssl_available(), reason="needs the openssl command")
def test_served_behind_the_same_tls_and_basic_auth_as_metrics(service: ExporterService, tmp_path: Path,
                                                               password_hash: str) -> None:
    material: TLSMaterial = make_material(tmp_path / "tls")
    config = WebConfig(tls=tls_config(material).tls, basic_auth_users={"oncall": password_hash})
    server = MetricsServer("127.0.0.1:0", service, config)
    server.start()
    try:
        tls = client_context(material)
        answers = {path: request(server.port, path, tls=tls, headers=basic("oncall", PASSWORD))
                   for path in ("/", "/api/v1/status", "/metrics", "/status", "/api/v1/status/x")}
        refused = [request(server.port, path, tls=tls) for path in ("/", "/api/v1/status", "/metrics")]
        wrong = request(server.port, "/", tls=tls, headers=basic("oncall", "guess"))
        plain = request(server.port, "/")
    finally:
        server.shutdown()
    status, headers, body = answers["/"]
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert body == service.status_page() and FAILING.encode() in body
    status, headers, body = answers["/api/v1/status"]
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["batches"]
    assert answers["/metrics"][0] == 200
    assert answers["/status"][0] == 404 and answers["/api/v1/status/x"][0] == 404
    assert [answer[0] for answer in refused] == [401, 401, 401] and wrong[0] == 401
    assert FAILING.encode() not in b"".join(answer[2] for answer in refused)
    assert plain[0] == 400  # plain HTTP to the TLS port


# --- in a real browser --------------------------------------------------------------------------------

SCREENSHOT_WIDTH = 1100


@pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))
def test_the_on_call_sees_the_failing_batch_first_in_a_real_browser(tmp_path: Path) -> None:
    """The demo's data with a failed night (its run failed and was re-run blindly, and failed again),
    served by the exporter process, opened in chromium: what a person sees. The data is built around the
    wall clock because the process reads it; nothing asserted depends on the hour."""
    config = demo_with_a_bad_night(tmp_path / "demo", now_utc())
    with running_exporter(config, tmp_path) as exporter:
        wait_until_ready(exporter)
        with chromium(tmp_path / "profile", viewport={"width": SCREENSHOT_WIDTH, "height": 900}) as browser:
            page = browser.new_page()
            requested: list[str] = []
            page.on("request", lambda sent: requested.append(sent.url))
            page.goto(exporter.url + "/")
            first = page.locator("#overview tbody tr").first
            assert first.get_attribute("data-batch") == FAILING
            assert first.locator("td.attempts").inner_text() == "2"
            assert "failed" in first.inner_text()
            card = page.locator(f"section.batch[data-batch='{FAILING}']")
            assert card.locator("dd .attempts").inner_text() == "2"
            command = card.locator("pre.rerun-check").inner_text()
            assert command == f"batch-exporter rerun-check -c {config.absolute()} {FAILING}"
            runbook = card.locator("a.runbook", has_text="BatchRerunOfNonIdempotentBatch")
            assert runbook.get_attribute("href") == (
                "https://github.com/batch-exporter/batch-exporter/blob/main/alerts/runbooks/"
                "BatchRerunOfNonIdempotentBatch.md")
            assert card.locator("a.runbook", has_text="BatchRunFailed").count() == 1
            assert page.locator("section.batch").nth(1).get_attribute("data-batch") == HEALTHY
            light = page.evaluate("getComputedStyle(document.body).backgroundColor")
            page.emulate_media(color_scheme="dark")
            dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert light == "rgb(255, 255, 255)" and dark == "rgb(13, 17, 23)"
            page.set_viewport_size({"width": 360, "height": 740})
            widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth,"
                                   " document.body.scrollWidth]")
            assert widths[0] <= widths[1] and widths[2] <= widths[1], widths  # no sideways scroll on a phone
            assert page.locator("#overview tbody tr").first.is_visible()
            assert page.locator("#refresh-note").inner_text() == "Refreshed every 30 s."  # its script runs
    assert requested == [exporter.url + "/"]  # no external asset: nothing else was fetched


# --- docs/status-page.md's examples ---------------------------------------------------------------------

DOC = Path(__file__).resolve().parents[1] / "docs" / "status-page.md"


def doc_blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", DOC.read_text(encoding="utf-8"), flags=re.S | re.M)


def shape(value: object) -> object:
    """The keys of `value`, nested (a list by its first item), without the values."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return None


def same_shape(documented: object, served: object, where: str = "") -> None:
    if isinstance(documented, dict):
        assert isinstance(served, dict) and documented.keys() == served.keys(), where
        for key in documented:
            if documented[key] is not None and served[key] is not None:
                same_shape(documented[key], served[key], f"{where}.{key}")
    elif isinstance(documented, list) and documented and served:
        assert isinstance(served, list)
        same_shape(documented[0], served[0], f"{where}[0]")


def test_the_documented_json_has_the_served_keys(service: ExporterService) -> None:
    [example] = doc_blocks("json")
    served = json.loads(service.status_json())
    documented = json.loads(example)
    card = [b for b in served["batches"] if b["batch"] == FAILING]
    served["batches"] = card  # the documented batch, with its logs and sources
    card[0]["logs"] = [log for log in card[0]["logs"] if log["log"] == "sdk"]
    same_shape(shape(documented), shape(served))


@pytest.mark.skipif(shutil.which("jq") is None, reason="needs jq (scripts/install-system-deps.sh installs it)")
def test_the_documented_chat_bot_filter_runs_on_the_served_json(service: ExporterService) -> None:
    [command] = doc_blocks("sh")
    words = shlex.split(command.replace("\\\n", " "))
    program = words[words.index("jq") + 2]  # jq -r PROGRAM
    store = service.exporter.store
    builder = SampleBuilder()
    for name in ("success", "failed", "running", "queued", "unknown"):
        builder.add("batch_run_last_status", 1.0 if name == "failed" else 0.0, batch="bot-demo", status=name)
    builder.add("batch_run_last_start_timestamp_seconds", NOW.timestamp() - 600, batch="bot-demo")  # as the rule
    store.record_success(builder.build("extra:bot"), NOW.timestamp(), 0.0)
    result = subprocess.run(["jq", "-r", program], input=service.status_json(), capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert "bot-demo: BatchRunFailed; before a re-run: null" in lines
    assert any(line.startswith(f"{FAILING}: ") and f"rerun-check -c {service.config_path} {FAILING}" in line
               for line in lines)
