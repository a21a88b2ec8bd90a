"""The status page (`/`): a `Status` written as one self-contained HTML document.

Everything inline (no external asset: the host may have no internet), every text HTML-escaped (batch,
log and check names and failure reasons can hold anything), readable on a phone (viewport, stacked
tables) and in dark mode (prefers-color-scheme). The page refreshes itself with a small inline script:
every 30 s, plus or minus 20 % so that open tabs drift apart, it fetches `./` (the page itself, relative
to its own address, whatever the browser's path holds) again and swaps the
content in; it stops while the tab is hidden (and refreshes once when it is shown again), and after a
failure waits twice as long each time, up to 10 minutes. It fetches the page rather than the JSON so
that there is one renderer, this one, with its escaping and masking. Without script the page is still
whole, and a meta refresh in <noscript> reloads it every 5 minutes.
"""
from __future__ import annotations

import base64
import hashlib
import math
from html import escape

from .status_model import BatchStatus, Moment, Status, how_long

REFRESH_SECONDS = 30
MAX_BACKOFF_SECONDS = 600
NOSCRIPT_REFRESH_SECONDS = 300
FILES_SHOWN = 3  # per log, the most recently written first (a glob may match hundreds)
# A fleet may hold thousands of jobs: cards go to the batches that are not ok, the worst first, up to this
# many; the others not ok get their overview row only, and every ok batch is a name in a folded list.
CARDS_SHOWN = 100

STYLE = """
:root{--bg:#fff;--fg:#1b1f23;--muted:#57606a;--line:#d0d7de;--card:#f6f8fa;--code:#eaeef2;
--critical:#b3261e;--critical-bg:#fde7e5;--warning:#8a5300;--warning-bg:#fff4d6;--info:#0b5cad;
--info-bg:#e3efff;--ok:#1a7f37;--ok-bg:#dcf5e3;--unknown:#57606a;--unknown-bg:#eaeef2;--link:#0b5cad}
@media (prefers-color-scheme: dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9da7b3;--line:#30363d;
--card:#161b22;--code:#21262d;--critical:#ff8a80;--critical-bg:#3d1512;--warning:#f2c46d;
--warning-bg:#3a2a06;--info:#79b8ff;--info-bg:#0c2a4d;--ok:#6fdd8b;--ok-bg:#0f2e19;--unknown:#9da7b3;
--unknown-bg:#21262d;--link:#79b8ff}}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;padding:0 12px 24px;background:var(--bg);color:var(--fg);
font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;overflow-wrap:break-word}
a{color:var(--link)}
header{padding:10px 0;border-bottom:1px solid var(--line)}
h1{font-size:1.25em;margin:0}
h2{font-size:1.1em;margin:0 0 8px}
h3{font-size:1em;margin:10px 0 4px}
.meta,.muted{color:var(--muted);font-size:.9em}
nav a{margin-right:10px}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.92em}
pre{background:var(--code);padding:8px;border-radius:6px;white-space:pre-wrap;margin:4px 0}
td code,pre{overflow-wrap:anywhere}
.badge{display:inline-block;white-space:nowrap;padding:1px 8px;border-radius:10px;font-size:.85em;font-weight:600}
.badge.critical{color:var(--critical);background:var(--critical-bg)}
.badge.warning{color:var(--warning);background:var(--warning-bg)}
.badge.info{color:var(--info);background:var(--info-bg)}
.badge.ok{color:var(--ok);background:var(--ok-bg)}
.badge.unknown{color:var(--unknown);background:var(--unknown-bg)}
table{border-collapse:collapse;width:100%;margin:6px 0}
th,td{text-align:left;padding:4px 6px;border-bottom:1px solid var(--line);vertical-align:top}
th{white-space:nowrap;font-size:.85em;color:var(--muted);font-weight:600}
section.batch{background:var(--card);border:1px solid var(--line);border-left-width:6px;border-radius:8px;
padding:10px 12px;margin:14px 0}
section.batch.critical{border-left-color:var(--critical)}
section.batch.warning{border-left-color:var(--warning)}
section.batch.info{border-left-color:var(--info)}
section.batch.ok{border-left-color:var(--ok)}
section.batch.unknown{border-left-color:var(--unknown)}
.todo{border:1px solid var(--line);border-radius:6px;padding:6px 10px;margin:6px 0;background:var(--bg)}
.todo ul{margin:4px 0;padding-left:20px}
.banner.critical{border-color:var(--critical);background:var(--critical-bg)}
details{margin:8px 0}
ul.ok-names{columns:16em;margin:4px 0;padding-left:20px;font-size:.9em}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:6px 0}
dl.facts dt{color:var(--muted)}
dl.facts dd{margin:0}
@media (max-width:640px){
 dl.facts{grid-template-columns:1fr}
 dl.facts dd{margin-bottom:6px}
 table.stack thead{display:none}
 table.stack tr{display:block;border-bottom:1px solid var(--line);padding:4px 0}
 table.stack td{display:block;border:0;padding:1px 0}
 table.stack td[data-label]::before{content:attr(data-label) ": ";color:var(--muted)}
}
"""

# Every time shown has data-epoch; once a refresh has read the server's Date header the script keeps
# "… ago" current from it (the server's clock, not the phone's).
SCRIPT = """
(function () {
  "use strict";
  var base = REFRESH_MS, maxWait = MAX_WAIT_MS, failures = 0, timer = null, skew = null;
  function note(text) {
    var n = document.getElementById("refresh-note");
    if (n) { n.textContent = text; }
  }
  function plan(ms) {  // +-20 %: tabs opened together drift apart
    clearTimeout(timer);
    timer = null;
    if (!document.hidden) { timer = setTimeout(refresh, ms * (0.8 + Math.random() * 0.4)); }
  }
  function span(s) {
    s = Math.max(0, Math.floor(s));
    if (s < 60) { return s + " s"; }
    var m = Math.floor(s / 60);
    if (m < 60) { return m + " min"; }
    var h = Math.floor(m / 60);
    m = m % 60;
    if (h < 48) { return h + " h " + (m < 10 ? "0" : "") + m + " min"; }
    return Math.floor(h / 24) + " d " + (h % 24) + " h";
  }
  function ages() {
    if (skew === null) { return; }
    var now = (Date.now() + skew) / 1000;
    document.querySelectorAll("[data-epoch]").forEach(function (e) {
      var d = now - parseFloat(e.getAttribute("data-epoch"));
      e.textContent = Math.abs(d) < 1 ? "now" : (d > 0 ? span(d) + " ago" : "in " + span(-d));
    });
  }
  function refresh() {
    fetch("./", {cache: "no-store", credentials: "same-origin", headers: {"Accept": "text/html"}})
      .then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        var date = r.headers.get("Date");
        if (date) { skew = Date.parse(date) - Date.now(); }
        return r.text();
      })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.getElementById("status"), old = document.getElementById("status");
        if (!fresh || !old) { throw new Error("no status in the answer"); }
        old.replaceWith(document.adoptNode(fresh));
        document.title = doc.title;
        failures = 0;
        ages();
        note("Refreshed every " + base / 1000 + " s.");
        plan(base);
      })
      .catch(function (error) {
        failures += 1;
        var wait = Math.min(base * Math.pow(2, failures), maxWait);
        note("Refresh failed (" + error.message + "), retrying in " + Math.round(wait / 1000) +
             " s: what is shown may be old.");
        plan(wait);
      });
  }
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { clearTimeout(timer); timer = null; } else { plan(1000); }
  });
  setInterval(function () { if (!document.hidden) { ages(); } }, 15000);
  note("Refreshed every " + base / 1000 + " s.");
  plan(base);
})();
""".replace("REFRESH_MS", str(REFRESH_SECONDS * 1000)).replace("MAX_WAIT_MS", str(MAX_BACKOFF_SECONDS * 1000))


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


# Served with the page (a web config's header of the same name replaces one): nothing but the page's own
# inline style and script runs, it fetches only its own origin, and no other site may frame it.
CONTENT_SECURITY_POLICY = (f"default-src 'none'; style-src {_sha256(STYLE)}; script-src {_sha256(SCRIPT)}; "
                           "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
                           "frame-ancestors 'none'")
PAGE_HEADERS = (("Content-Security-Policy", CONTENT_SECURITY_POLICY), ("X-Content-Type-Options", "nosniff"),
                ("X-Frame-Options", "DENY"))
JSON_HEADERS = (("X-Content-Type-Options", "nosniff"),)


def _t(text: object) -> str:
    return escape(str(text), quote=True)


def _when(value: Moment | None, missing: str = "never") -> str:
    if value is None:
        return f'<span class="muted">{_t(missing)}</span>'
    return (f'<time datetime="{value.epoch:.0f}">{_t(value.local)}</time> '
            f'(<span class="ago" data-epoch="{value.epoch:.3f}">{_t(value.ago)}</span>)')


def _bytes(value: float | None) -> str:
    if value is None:
        return "?"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} TiB"  # pragma: no cover - the loop returns at GiB


def _number(value: float | int | None) -> str:
    if value is None or not math.isfinite(value):
        return "?"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:g}"


def render_status_page(status: Status, title: str = "batch-exporter") -> bytes:
    """The whole page, UTF-8."""
    trouble = [b for b in status.batches if b.level in ("critical", "warning")]
    heading = (f"{len(trouble)} in trouble" if trouble else "all quiet") + f" of {len(status.batches)}"
    shown = [b for b in status.batches if b.level != "ok"]
    parts = [
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
        "<meta name=\"color-scheme\" content=\"light dark\">\n",
        f"<noscript><meta http-equiv=\"refresh\" content=\"{NOSCRIPT_REFRESH_SECONDS}\"></noscript>\n",
        f"<title>{_t(title)}: {_t(heading)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        f"<header>\n<h1>{_t(title)}</h1>\n<p class=\"meta\">",
        f"Version {_t(status.version)}. " if status.version else "",
        "From the exporter's latest snapshots (no Prometheus needed); each condition is an alert rule read "
        "now, without its <code>for</code>. ",
        "<span id=\"refresh-note\">Reload the page to refresh.</span></p>\n",
        "<nav><a href=\"api/v1/status\">JSON</a><a href=\"metrics\">Metrics</a>"
        "<a href=\"-/healthy\">Health</a><a href=\"-/ready\">Readiness</a></nav>\n</header>\n",
        "<main id=\"status\">\n",
        f"<p class=\"meta\">As of {_when(status.generated)}. {_t(heading)}.</p>\n",
        _unexported(status),
        _overview(status, shown),
        *(_card(batch) for batch in shown[:CARDS_SHOWN]),
        _more_cards(len(shown)),
        "</main>\n<script>", SCRIPT, "</script>\n</body>\n</html>\n",
    ]
    return "".join(parts).encode("utf-8")


def _unexported(status: Status) -> str:
    """The banner of the series cap: batches whose series Prometheus does not get cannot page."""
    if not status.unexported_sources:
        return ""
    names = status.unexported_batches
    listed = ", ".join(_t(name) for name in names[:CARDS_SHOWN])
    more = f" and {len(names) - CARDS_SHOWN} more" if len(names) > CARDS_SHOWN else ""
    return ("<div id=\"unexported\" class=\"todo banner critical\">\n<h3>Prometheus cannot alert on "
            f"{len(names)} batch{'es' if len(names) != 1 else ''}</h3>\n"
            f"<p>The series cap (<code>global.max_series</code>) left {len(status.unexported_sources)} "
            "source(s) out of <code>/metrics</code> (<code>batch_exporter_series_dropped</code>): no alert rule "
            f"sees them, only this page does. Batches: <strong class=\"unexported\">{listed}</strong>{more}.</p>\n"
            "</div>\n")


def _overview(status: Status, shown: list[BatchStatus]) -> str:
    if not status.batches:
        return "<p>No batch is configured.</p>\n"
    rows = []
    for batch in shown:
        run = batch.run
        last = (f"{_t(run.status)}" + (f" <code>{_t(run.code)}</code>" if run.code is not None else "")
                if run.status is not None else '<span class="muted">no run</span>')
        what = "; ".join(c.alert for c in batch.conditions) or '<span class="muted">nothing</span>'
        if batch.conditions:
            what = _t(what)
        rows.append(
            f"<tr class=\"{_t(batch.level)}-row\" data-batch=\"{_t(batch.batch)}\">"
            f"<td data-label=\"batch\"><a href=\"#batch-{_t(batch.batch)}\">{_t(batch.batch)}</a></td>"
            f"<td data-label=\"level\"><span class=\"badge {_t(batch.level)}\">{_t(batch.level)}</span></td>"
            f"<td data-label=\"last run\">{last}</td>"
            f"<td data-label=\"attempts\" class=\"attempts\">{_number(run.attempts)}</td>"
            f"<td data-label=\"conditions\">{what}</td></tr>\n")
    table = ("<table id=\"overview\" class=\"stack\"><thead><tr><th>batch</th><th>level</th><th>last run</th>"
             "<th>attempts</th><th>conditions</th></tr></thead><tbody>\n" + "".join(rows) + "</tbody></table>\n"
             if rows else "")
    return table + _ok_list([b for b in status.batches if b.level == "ok"])


def _ok_list(ok: list[BatchStatus]) -> str:
    """Every ok batch by name only, folded: a fleet's thousands of quiet jobs cost a few bytes each."""
    if not ok:
        return ""
    names = "".join(f"<li>{_t(batch.batch)}</li>" for batch in sorted(ok, key=lambda b: b.batch))
    count = f"{len(ok):,}"
    return (f"<details id=\"ok-batches\"><summary><span class=\"badge ok\">ok</span> {count} "
            f"batch{'es' if len(ok) != 1 else ''} ok: nothing holds that an alert pages for</summary>\n"
            f"<ul class=\"ok-names\">{names}</ul>\n</details>\n")


def _more_cards(shown: int) -> str:
    if shown <= CARDS_SHOWN:
        return ""
    return (f"<p class=\"muted\" id=\"more-cards\">{shown - CARDS_SHOWN} more batches are not ok: their rows are "
            "above, their details in <a href=\"api/v1/status\">the JSON</a>.</p>\n")


def _card(batch: BatchStatus) -> str:
    name, level = _t(batch.batch), _t(batch.level)
    out = [f"<section class=\"batch {level}\" id=\"batch-{name}\" data-batch=\"{name}\">\n",
           f"<h2><span class=\"badge {_t(batch.level)}\">{_t(batch.level)}</span> {_t(batch.batch)}</h2>\n",
           f"<p class=\"muted\">Times in {_t(batch.time_zone)}.</p>\n"]
    out.append(_todo(batch))
    out.append(_facts(batch))
    out.append(_logs(batch))
    out.append(_sources(batch))
    out.append("</section>\n")
    return "".join(out)


def _todo(batch: BatchStatus) -> str:
    items = "".join(
        f"<li><span class=\"badge {_t(c.severity)}\">{_t(c.severity)}</span> {_t(c.summary)} "
        f"<a class=\"runbook\" href=\"{_t(c.runbook_url)}\">runbook: {_t(c.alert)}</a></li>\n"
        for c in batch.conditions)
    out = ["<div class=\"todo\">\n<h3>What to do</h3>\n"]
    if items:
        out.append(f"<ul class=\"conditions\">\n{items}</ul>\n")
    elif batch.level == "unknown":
        out.append("<p>Nothing is known of its runs yet: see its sources below.</p>\n")
    else:
        out.append("<p>Nothing holds that an alert pages for.</p>\n")
    if batch.rerun_check is not None:
        out.append("<p>Before any re-run, run:</p>\n"
                   f"<pre class=\"rerun-check\"><code>{_t(batch.rerun_check)}</code></pre>\n")
    else:
        out.append(f"<p class=\"muted\">No rerun-check: {_t(batch.rerun_check_note)}.</p>\n")
    out.append("</div>\n")
    return "".join(out)


def _facts(batch: BatchStatus) -> str:
    run = batch.run
    rows: list[tuple[str, str]] = []
    if run.status is None:
        rows.append(("Last run", "<span class=\"muted\">no run in the lookback window, or the run table not "
                                 "read yet</span>"))
    else:
        code = f" (code <code>{_t(run.code)}</code>)" if run.code is not None else ""
        ended = f", ended {_when(run.last_end)}" if run.last_end is not None else ""
        rows.append(("Last run", f"<strong>{_t(run.status)}</strong>{code}, started "
                                 f"{_when(run.last_start, 'unknown')}{ended}"))
        rows.append(("Last success", _when(run.last_success)))
    if run.attempts is not None:
        key = f" for {_t(run.business_date)}" if run.business_date else " for the latest run key"
        attempts = f"<span class=\"attempts\">{run.attempts}</span>{key}"
        if run.earlier_key is not None:
            attempts += f"; {run.earlier_key[1]} for the earlier {_t(run.earlier_key[0])}, re-run after it"
        rows.append(("Attempts", attempts))
    rows.append(("Idempotent", "unknown" if run.idempotent is None else
                 ("yes: configured as idempotent" if run.idempotent
                  else "<strong>no</strong>: not configured as idempotent, a re-run may do harm")))
    limit = f"max_duration {how_long(run.max_duration_seconds)}" if run.max_duration_seconds else "no max_duration"
    if run.running:
        dead = f", {run.presumed_dead} presumed dead" if run.presumed_dead else ""
        rows.append(("Running", f"{run.running} run(s), the oldest for "
                                f"<strong>{how_long(run.running_seconds or 0)}</strong> against {limit}{dead}"))
    elif run.running is not None:
        rows.append(("Running", f"no ({limit})"))
    if run.pending_records is not None or run.left_pending_records is not None:
        rows.append(("Pending rows", f"{_number(run.left_pending_records)} left pending by ended attempts, "
                                     f"{_number(run.pending_records)} pending in all"))
    if batch.checks:
        failed = batch.failed_checks
        listed = ", ".join(f"{_t(c.check)} = {_number(c.value)}" for c in failed)
        rows.append(("Checks", f"<strong>failed: {listed}</strong> ({len(batch.checks)} checks)" if failed else
                     f"all {len(batch.checks)} within bounds"))
    if batch.schedule is not None:
        schedule = batch.schedule
        text = "<strong>paused by its scheduler</strong>; " if schedule.paused else ""
        text += f"last expected {_when(schedule.last_expected, 'none')}, next {_when(schedule.next_expected, 'none')}"
        if schedule.finish_deadline is not None:
            text += f", finish by {_when(schedule.finish_deadline)}"
        rows.append(("Schedule", text))
    body = "".join(f"<dt>{_t(name)}</dt><dd>{value}</dd>\n" for name, value in rows)
    return f"<dl class=\"facts\">\n{body}</dl>\n"


def _logs(batch: BatchStatus) -> str:
    if not batch.logs:
        return ""
    rows = []
    for log in batch.logs:
        cap = _bytes(log.limit_bytes) if log.limit_bytes is not None else "no cap"
        if not log.files:
            rows.append(f"<tr><td data-label=\"log\">{_t(log.log)}</td><td data-label=\"file\" colspan=\"3\">"
                        f"<span class=\"muted\">no file found yet</span></td></tr>\n")
        for file in log.files[:FILES_SHOWN]:
            ratio = f" ({file.ratio:.0%})" if file.ratio is not None else ""
            rows.append(f"<tr><td data-label=\"log\">{_t(log.log)}</td>"
                        f"<td data-label=\"file\"><code>{_t(file.path)}</code></td>"
                        f"<td data-label=\"size / cap\">{_bytes(file.size_bytes)} / {_t(cap)}{_t(ratio)}</td>"
                        f"<td data-label=\"last write\">{_when(file.modified, 'unknown')}</td></tr>\n")
        if len(log.files) > FILES_SHOWN:
            rows.append(f"<tr><td data-label=\"log\">{_t(log.log)}</td><td data-label=\"file\" colspan=\"3\">"
                        f"<span class=\"muted\">and {len(log.files) - FILES_SHOWN} older files "
                        f"(all in <a href=\"api/v1/status\">the JSON</a>)</span></td></tr>\n")
    return ("<h3>Logs</h3>\n<table class=\"stack logs\"><thead><tr><th>log</th><th>file</th><th>size / cap</th>"
            "<th>last write</th></tr></thead><tbody>\n" + "".join(rows) + "</tbody></table>\n")


def _sources(batch: BatchStatus) -> str:
    if not batch.sources:
        return ""
    rows = []
    for source in batch.sources:
        level = "ok" if source.up else ("unknown" if not source.polled else "critical")
        why = ""
        if source.reason is not None:
            why = f"{_t(source.reason)}: {_t(source.message)} (last failed {_when(source.last_failure, 'unknown')})"
        rows.append(f"<tr><td data-label=\"source\"><code>{_t(source.source)}</code></td>"
                    f"<td data-label=\"state\"><span class=\"badge {level}\">{_t(source.state)}</span></td>"
                    f"<td data-label=\"last good poll\">{_when(source.last_success)}</td>"
                    f"<td data-label=\"reason\">{why}</td></tr>\n")
    return ("<h3>Sources</h3>\n<table class=\"stack sources\"><thead><tr><th>source</th><th>state</th>"
            "<th>last good poll</th><th>reason</th></tr></thead><tbody>\n" + "".join(rows) + "</tbody></table>\n")
