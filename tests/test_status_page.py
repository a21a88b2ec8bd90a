"""The status page served: the real exporter's service behind MetricsServer, with TLS and basic auth as
/metrics, rendered once per change of the snapshots; and in a real browser (Debian's chromium driven by
playwright) on the demo's data, as the exporter process serves it."""
from __future__ import annotations

import gzip
import json
import re
import shlex
import shutil
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import bcrypt
import pytest

from batch_exporter.config import load_config
from batch_exporter.practice.demo import create_demo, demo_config_text
from batch_exporter.service import ExporterService
from batch_exporter.snapshot import SampleBuilder
from batch_exporter.status_model import Status
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


class Ticks:
    """A monotonic clock moved by hand: the renders' rate limit."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()


@pytest.fixture
def service(tmp_path: Path, ticks: Ticks) -> Iterator[ExporterService]:
    paths = create_demo(tmp_path / "demo", now=NOW)
    paths.config.write_text(demo_config_text(paths.folder), encoding="utf-8")
    service = ExporterService(load_config(paths.config), config_path=paths.config, keep_log_state=False,
                              clock=Clock(), status_render_interval=5.0, monotonic=ticks)
    service.poll_once()
    yield service
    service.stop()


def change(service: ExporterService, attempts: int) -> None:
    builder = SampleBuilder()
    builder.add("batch_run_attempts", attempts, batch=FAILING)
    service.exporter.store.record_success(builder.build("extra:test"), NOW.timestamp(), 0.0)


def test_the_page_and_its_json_are_rendered_apart_when_asked_and_at_most_once_per_interval(
        service: ExporterService, ticks: Ticks, monkeypatch: pytest.MonkeyPatch) -> None:
    import batch_exporter.service as service_module
    pages: list[int] = []
    real = service_module.render_status_page

    def counted(status: Status) -> bytes:
        pages.append(1)
        return real(status)

    monkeypatch.setattr(service_module, "render_status_page", counted)
    data = service.status_json()
    assert pages == []  # the JSON alone renders no HTML
    page = service.status_page()
    assert pages == [1] and gzip.decompress(page.gzipped) == page.plain
    assert service.status_page() is not None and service.status_page().plain is page.plain  # no re-render
    change(service, 2)
    ticks.now += 4.9
    assert service.status_page().plain is page.plain and service.status_json().plain is data.plain  # too soon
    ticks.now += 0.1
    changed = service.status_page()
    assert changed.plain != page.plain and service.status_json().plain != data.plain and pages == [1, 1]
    assert service.status_page().plain is changed.plain
    service.exporter.store.record_failure("runs:card-authorization", "connect", 0.1, message="database unreachable",
                                          at=NOW.timestamp())
    ticks.now += 5
    down = json.loads(service.status_json().plain)
    [runs] = [s for b in down["batches"] for s in b["sources"] if s["source"] == "runs:card-authorization"]
    assert runs["state"] == "down (connect)" and runs["message"] == "database unreachable"


def test_a_request_during_a_render_gets_the_previous_bytes(service: ExporterService, ticks: Ticks,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import batch_exporter.service as service_module
    before = service.status_page().plain
    rendering, release = threading.Event(), threading.Event()
    real = service_module.render_status_page

    def slow(status: Status) -> bytes:
        rendering.set()
        assert release.wait(30)
        return real(status)

    monkeypatch.setattr(service_module, "render_status_page", slow)
    change(service, 3)
    ticks.now += 5
    worker = threading.Thread(target=service.status_page)
    worker.start()
    try:
        assert rendering.wait(30)
        assert service.status_page().plain is before  # not blocked: the previous page
    finally:
        release.set()
        worker.join(30)
    assert service.status_page().plain != before


def test_the_page_is_gzipped_and_framed_by_no_one_unless_the_web_config_says_otherwise(
        service: ExporterService) -> None:
    answers = {}
    for name, config in (("default", None), ("own", WebConfig(headers={"X-Frame-Options": "sameorigin"}))):
        server = MetricsServer("127.0.0.1:0", service, config)
        server.start()
        try:
            answers[name] = (request(server.port, "/", headers={"Accept-Encoding": "gzip"}),
                             request(server.port, "/api/v1/status", headers={"Accept-Encoding": "gzip"}),
                             request(server.port, "/"))
        finally:
            server.shutdown()
    (status, headers, body), (_, json_headers, json_body), (_, plain_headers, plain) = answers["default"]
    assert status == 200 and headers["Content-Encoding"] == "gzip" and gzip.decompress(body) == plain
    assert "Content-Encoding" not in plain_headers and plain == service.status_page().plain
    assert json_headers["Content-Encoding"] == "gzip" and json.loads(gzip.decompress(json_body))["batches"]
    assert headers["X-Content-Type-Options"] == "nosniff" and json_headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "'unsafe-inline'" not in policy and "frame-ancestors 'none'" in policy
    own = answers["own"][0][1]
    assert own.get_all("X-Frame-Options") == ["sameorigin"]  # the configured header, not both


def test_the_page_names_the_batches_the_series_cap_leaves_out_of_metrics(tmp_path: Path) -> None:
    paths = create_demo(tmp_path / "demo", now=NOW)
    text = demo_config_text(paths.folder).replace("global:\n", "global:\n  max_series: 100\n", 1)
    paths.config.write_text(text, encoding="utf-8")
    service = ExporterService(load_config(paths.config), config_path=paths.config, keep_log_state=False, clock=Clock())
    try:
        service.poll_once()
        dropped = service.exporter.store.view().cap
        assert dropped is not None and dropped.dropped_sources  # the cap does leave sources out here
        data = json.loads(service.status_json().plain)
        assert data["unexported"]["sources"] == list(dropped.dropped_sources)
        assert data["unexported"]["batches"]
        page = service.status_page().plain.decode()
        assert "Prometheus cannot alert on" in page and data["unexported"]["batches"][0] in page
    finally:
        service.stop()


def test_json_and_page_say_the_same(service: ExporterService) -> None:
    data = json.loads(service.status_json().plain)
    page = service.status_page().plain.decode()
    assert data["config"] == str(service.config_path)
    assert {b["batch"] for b in data["batches"]} == {FAILING, HEALTHY}
    for batch in data["batches"]:
        assert batch["time_zone"] == "Asia/Tokyo"
        assert batch["rerun_check"] == f"batch-exporter rerun-check -c {service.config_path} {batch['batch']}"
        if batch["level"] == "ok":  # a name in the folded list of ok batches, no card
            assert f"<li>{batch['batch']}</li>" in page and f'id="batch-{batch["batch"]}"' not in page
        else:
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
    assert body == service.status_page().plain and FAILING.encode() in body
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
            # the other batch: a row of its own when something holds for it, else a name among the ok ones
            # (which depends on the hour the demo's data was built at: either is right)
            other = page.locator(f"#overview tr[data-batch='{HEALTHY}'], #ok-batches li", has_text=HEALTHY)
            assert other.count() == 1
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



@pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))
def test_the_page_refreshes_itself_and_says_so_when_a_refresh_fails(tmp_path: Path) -> None:
    """The page's own script, with the browser's clock run forward: a refresh swaps in what the exporter
    serves now, and a failed one says it will retry later. The served page is the exporter's; what the
    refresh gets is its real answer with one change made on the way (the test's, in the browser), so
    that the swap shows whatever the hour."""
    from playwright.sync_api import Route, expect

    config = demo_with_a_bad_night(tmp_path / "demo", now_utc())
    with running_exporter(config, tmp_path) as exporter:
        wait_until_ready(exporter)
        with chromium(tmp_path / "profile") as browser:
            page = browser.new_page()
            page.clock.install()
            # opened as "//", which a proxy that merges slashes passes on as "/": the script must not fetch
            # location.pathname ("//" is a URL of another host)
            twice = exporter.url + "//"
            page.route(twice, lambda route: route.fulfill(response=route.fetch(url=exporter.url + "/")))
            page.goto(twice)
            first = page.locator("#overview tbody tr").first
            assert first.get_attribute("data-batch") == FAILING
            expect(page.locator("#refresh-note")).to_have_text("Refreshed every 30 s.")
            refreshed: list[str] = []

            def changed(route: Route) -> None:
                refreshed.append(route.request.url)
                answer = route.fetch(url=exporter.url + "/")
                body = answer.text().replace('<td data-label="attempts" class="attempts">2</td>',
                                             '<td data-label="attempts" class="attempts">7</td>', 1)
                route.fulfill(response=answer, body=body)

            page.unroute(twice)
            page.route(twice, changed)
            page.clock.run_for(37_000)  # 30 s + 20 %, and a second
            expect(first.locator("td.attempts")).to_have_text("7")
            assert refreshed == [twice]  # the page's own address, fetched as "./"
            page.unroute(twice)
            page.route(twice, lambda route: route.fulfill(status=500, body="down"))
            page.clock.run_for(37_000)
            expect(page.locator("#refresh-note")).to_contain_text("Refresh failed (HTTP 500), retrying in")
            expect(page.locator("#refresh-note")).to_contain_text("what is shown may be old")
            assert first.locator("td.attempts").inner_text() == "7"  # the last good answer stays


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
    served = json.loads(service.status_json().plain)
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
    result = subprocess.run(["jq", "-r", program], input=service.status_json().plain, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert "bot-demo: BatchRunFailed; before a re-run: null" in lines
    assert any(line.startswith(f"{FAILING}: ") and f"rerun-check -c {service.config_path} {FAILING}" in line
               for line in lines)
