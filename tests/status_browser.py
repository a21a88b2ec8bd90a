"""The status page in a real browser (test helper, and scripts/status_screenshot.py's).

The demo's data with one bad night added (its card-authorization run failed, and was re-run blindly
and failed again), served by the real exporter process, looked at with Debian's chromium driven by
playwright. No browser is ever downloaded: playwright launches /usr/bin/chromium.
"""
from __future__ import annotations

import random
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from batch_exporter.practice.demo import prepare_demo
from batch_exporter.practice.demo_sim import AuthRun, DemoPaths, DemoWriter, RunStatus, open_writer_connection, play

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
FAILING = "card-authorization"
HEALTHY = "settlement-report"


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (scripts/install-system-deps.sh installs Debian's chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing (pip install -e '.[test]')"
    return None


def demo_with_a_bad_night(folder: Path, now: datetime) -> Path:
    """The demo's data in `folder`, with tonight's card-authorization failed twice (a blind re-run of a
    batch that is not idempotent) and ended before `now`; returns the configuration's path."""
    config, _simulator = prepare_demo(folder, now=now)  # the simulator is never started: the data stays put
    paths = DemoPaths(folder)
    with sqlite3.connect(paths.database) as conn:
        [latest] = conn.execute("SELECT MAX(biz_date) FROM job_execution WHERE job_name = ?", (FAILING,)).fetchone()
    night = date.fromisoformat(latest) + timedelta(days=1)
    at = now.timestamp()
    rng = random.Random(16)
    runs = [AuthRun(night, 1, at - 40 * 60, 10 * 60, RunStatus.FAILED, random.Random(rng.random()), fail_step=2),
            AuthRun(night, 2, at - 20 * 60, 8 * 60, RunStatus.FAILED, random.Random(rng.random()), fail_step=2)]
    writer_conn = open_writer_connection(paths.database)
    try:
        play(DemoWriter(paths, writer_conn), [step for run in runs for step in run.steps()])
        writer_conn.commit()
    finally:
        writer_conn.close()
    return config


@contextmanager
def chromium(profile: Path, **context: Any) -> Iterator[Any]:
    """A playwright BrowserContext of Debian's chromium on a fresh profile folder (playwright takes the
    profile as user_data_dir: it refuses --user-data-dir among the arguments)."""
    from playwright.sync_api import sync_playwright

    shutil.rmtree(profile, ignore_errors=True)
    profile.mkdir(parents=True)
    with sync_playwright() as driver:
        browser = driver.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, **context)
        try:
            yield browser
        finally:
            browser.close()


def wait_until_ready(exporter: Any, timeout: float = 30) -> None:
    """Until every source has been polled once (/-/ready), so that the page shows all of them."""
    deadline = time.monotonic() + timeout
    while exporter.get("/-/ready")[0] != 200:
        if time.monotonic() > deadline:
            raise AssertionError(f"the exporter was not ready within {timeout:g}s:\n{exporter.log()}")
        time.sleep(0.2)


def now_utc() -> datetime:
    return datetime.now(UTC)
