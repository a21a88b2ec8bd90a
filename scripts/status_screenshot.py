#!/usr/bin/env python3
"""Make docs/images/status-page.png: the status page of the demo's data with a failed night, as
tests/test_status_page.py's browser test sees it (Debian's chromium driven by playwright).

    .venv/bin/python scripts/status_screenshot.py [--out docs/images/status-page.png] [--dark]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from exporter_process import running_exporter  # noqa: E402
from status_browser import browser_missing, chromium, demo_with_a_bad_night, now_utc, wait_until_ready  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "status-page.png")
    parser.add_argument("--width", type=int, default=1000)
    parser.add_argument("--dark", action="store_true", help="emulate prefers-color-scheme: dark")
    args = parser.parse_args()
    missing = browser_missing()
    if missing is not None:
        print(f"status_screenshot: {missing}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="status-screenshot-") as scratch:
        folder = Path(scratch)
        config = demo_with_a_bad_night(folder / "demo", now_utc())
        with running_exporter(config, folder) as exporter:
            wait_until_ready(exporter)
            with chromium(folder / "profile", viewport={"width": args.width, "height": 900},
                          color_scheme="dark" if args.dark else "light") as browser:
                page = browser.new_page()
                page.goto(exporter.url + "/")
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out), full_page=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
