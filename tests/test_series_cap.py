"""The cap on the exposition's series (global.max_series): whole sources left out in a fixed order, the
exporter's own series always there, what was left out said by metric and log, and no extra render."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from batch_exporter import store as store_module
from batch_exporter.app import build_sources, open_databases
from batch_exporter.config import parse_config
from batch_exporter.snapshot import SampleBuilder, Snapshot
from batch_exporter.store import KEEP_ORDER, SeriesCap, Store, cap_series
from exporter_process import Series, parse_exposition, running_exporter, value


def fixed_monotonic() -> float:
    return 100.0  # renders are counted here, never timed


# Two batches as app.build_sources declares their sources (configuration order), with their series.
SIZES: dict[str, int] = {
    "config:a": 5, "runs:a": 20, "schedule:a": 3, "checks:a": 4, "logfiles:a/app": 50, "logscan:a/app": 8,
    "evidence:a": 2,
    "config:b": 5, "runs:b": 20, "checks:b": 4, "logfiles:b/app": 10, "logscan:b/app": 8, "evidence:b": 2,
}
TOTAL = sum(SIZES.values())  # 141


def snapshot(source: str, series: int) -> Snapshot:
    """`series` samples of `source`, told apart by their labels (batch = the source's name)."""
    out = SampleBuilder()
    for index in range(series):
        out.add("batch_run_records", index, batch=source, state=f"s{index}")
    return out.build(source)


def filled_store(limit: int, sizes: dict[str, int] = SIZES) -> Store:
    store = Store(sizes, min_render_interval=0, monotonic=fixed_monotonic, max_series=limit)
    for source, series in sizes.items():
        store.record_success(snapshot(source, series), 1000.0, 0.1)
    return store


def scrape(store: Store) -> Series:
    return parse_exposition(store.payload()[0].decode())


def source_series(series: Series) -> dict[str, int]:
    """Series of each source in an exposition (every sample's batch label is its source here)."""
    counts: dict[str, int] = {}
    for (name, labels), _ in series.items():
        if not name.startswith("batch_exporter_"):
            source = dict(labels)["batch"]
            counts[source] = counts.get(source, 0) + 1
    return counts


def dropped(series: Series) -> dict[str, float]:
    return {dict(labels)["source"]: count for (name, labels), count in series.items()
            if name == "batch_exporter_series_dropped"}


# --- under the cap ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [TOTAL, 10 * TOTAL])
def test_under_the_cap_or_at_it_nothing_is_left_out(limit: int) -> None:
    series = scrape(filled_store(limit))
    assert source_series(series) == SIZES
    assert dropped(series) == dict.fromkeys(SIZES, 0.0)
    assert value(series, "batch_exporter_series") == TOTAL
    assert value(series, "batch_exporter_series_limit") == limit


# --- over it: which sources go first ----------------------------------------------------------------------

TIER_0_A = {"config:a", "runs:a", "schedule:a"}  # 28 series
TIER_0_B = {"config:b", "runs:b"}  # 25


@pytest.mark.parametrize(("limit", "left_out"), [
    # the logs go first, the largest first
    (TOTAL - 1, {"logfiles:a/app"}),
    (91, {"logfiles:a/app"}),
    (90, {"logfiles:a/app", "logfiles:b/app"}),
    # two logs of 8 series: the one earlier in the configuration stays
    (80, {"logfiles:a/app", "logfiles:b/app", "logscan:b/app"}),
    # then checks and log evidence, the last in the configuration first
    (64, {"logfiles:a/app", "logfiles:b/app", "logscan:b/app", "logscan:a/app", "evidence:b"}),
    # one that does not fit is left out, and a smaller one after it still gets its turn (evidence:b, 2 series)
    (62, {"logfiles:a/app", "logfiles:b/app", "logscan:b/app", "logscan:a/app", "checks:b"}),
    # then whole batches, the last in the configuration first: never its runs without its configuration
    (53, set(SIZES) - TIER_0_A - TIER_0_B),
    # batch b does not fit: its runs go, while the checks, evidence and a log scan after it fit
    (52, TIER_0_B | {"logscan:b/app", "logfiles:b/app", "logfiles:a/app"}),
    (27, set(SIZES) - TIER_0_B - {"evidence:a"}),  # config:a alone would fit: not without the rest of its batch
    (0, set(SIZES)),
])
def test_over_the_cap_whole_sources_are_left_out_in_the_keep_order(limit: int, left_out: set[str]) -> None:
    series = scrape(filled_store(limit))
    kept = set(SIZES) - left_out
    assert source_series(series) == {source: SIZES[source] for source in kept}
    assert dropped(series) == {source: float(SIZES[source] if source in left_out else 0) for source in SIZES}
    assert value(series, "batch_exporter_series") == sum(SIZES[source] for source in kept) <= limit


def test_the_keep_order_does_not_depend_on_the_order_polls_finish() -> None:
    polled_backwards = Store(SIZES, min_render_interval=0, monotonic=fixed_monotonic, max_series=62)
    for source in reversed(list(SIZES)):
        polled_backwards.record_success(snapshot(source, SIZES[source]), 1000.0, 0.1)
    assert scrape(polled_backwards) == scrape(filled_store(62))


def test_a_source_the_store_was_not_told_of_ranks_after_those_of_its_kind_it_was() -> None:
    snapshots = {name: snapshot(name, 5) for name in ("checks:a", "checks:b", "checks:z")}
    # checks:z recorded first but declared last: the store appends it to the configuration order
    _, cap = cap_series(snapshots, ["checks:b", "checks:a", "checks:z"], 10)
    assert cap == SeriesCap(10, 10, (("checks:a", 0), ("checks:b", 0), ("checks:z", 5)))
    store = Store(["checks:b", "checks:a"], min_render_interval=0, monotonic=fixed_monotonic, max_series=10)
    store.record_success(snapshots["checks:z"], 1000.0, 0.1)
    store.record_success(snapshots["checks:b"], 1000.0, 0.1)
    store.record_success(snapshots["checks:a"], 1000.0, 0.1)
    assert dropped(scrape(store)) == {"checks:a": 0, "checks:b": 0, "checks:z": 5}


def test_every_kind_of_source_the_exporter_builds_has_its_place_in_the_keep_order(tmp_path: Path) -> None:
    # A new kind of source must be placed on purpose: unplaced, it would be left out before the logs.
    config = parse_config(f"""databases:
  d: {{sqlite: '{tmp_path / "runs.db"}'}}
batches:
  b:
    database: d
    runs:
      table: t
      columns: {{run_id: id, status: s, started_at: st, ended_at: en}}
      status: {{success: [OK], failed: [NG]}}
    schedule: {{query: "SELECT NULL, NULL, 0"}}
    max_duration: 1h
    checks:
      c: {{query: "SELECT 0", max: 0}}
    logs:
      app: {{path: '{tmp_path / "app.log"}'}}
""", "exporter.yml")
    databases = open_databases(config)
    try:
        names = [scheduled.source.name for scheduled in build_sources(config, databases, keep_log_state=False)]
    finally:
        for db in databases.values():
            db.close()
    kinds = {name.partition(":")[0] for name in names}
    assert kinds == {"config", "runs", "schedule", "checks", "logfiles", "logscan", "evidence"}
    assert kinds <= set(KEEP_ORDER)


# --- the exporter's own series -----------------------------------------------------------------------------


def test_the_exporters_own_series_are_always_there_and_not_counted() -> None:
    store = filled_store(0)
    store.record_failure("runs:a", "timeout", 3.0)
    series = scrape(store)
    assert source_series(series) == {}
    assert value(series, "batch_exporter_series") == 0
    assert value(series, "batch_exporter_series_limit") == 0
    for source in SIZES:
        assert value(series, "batch_exporter_source_up", source=source) == (0 if source == "runs:a" else 1)
        assert value(series, "batch_exporter_source_last_success_timestamp_seconds", source=source) == 1000
        assert value(series, "batch_exporter_source_poll_duration_seconds", source=source) is not None
    assert value(series, "batch_exporter_source_errors_total", source="runs:a", reason="timeout") == 1
    assert any(name == "batch_exporter_build_info" for name, _ in series)


def test_a_source_not_polled_yet_counts_nothing_and_is_listed() -> None:
    store = Store(["config:a", "runs:a"], min_render_interval=0, monotonic=fixed_monotonic, max_series=5)
    store.record_success(snapshot("config:a", 5), 1000.0, 0.1)
    series = scrape(store)
    assert dropped(series) == {"config:a": 0, "runs:a": 0}
    assert source_series(series) == {"config:a": 5}


def test_the_view_a_one_off_exposition_renders_is_capped_too() -> None:
    view = filled_store(90).view()
    assert {snap.source for snap in view.snapshots if snap.samples} == set(SIZES) - {"logfiles:a/app",
                                                                                     "logfiles:b/app"}
    assert view.cap is not None and view.cap.dropped_sources == ("logfiles:a/app", "logfiles:b/app")


def test_a_sources_own_batch_exporter_series_stay_and_are_not_counted() -> None:
    out = SampleBuilder()
    out.add("batch_exporter_fleet_jobs", 4, fleet="agent")
    for index in range(4):
        out.add("batch_run_records", index, batch="fleet:agent", state=f"s{index}")
    sizes = {"config:a": 5, "fleet:agent": 4}
    store = Store(sizes, min_render_interval=0, monotonic=fixed_monotonic, max_series=6)
    store.record_success(snapshot("config:a", 5), 1000.0, 0.1)
    store.record_success(out.build("fleet:agent"), 1000.0, 0.1)
    series = scrape(store)
    assert dropped(series) == {"config:a": 0, "fleet:agent": 4}  # a kind not in KEEP_ORDER goes first
    assert value(series, "batch_exporter_fleet_jobs", fleet="agent") == 4
    assert source_series(series) == {"config:a": 5}
    assert value(series, "batch_exporter_series") == 5


# --- changes: a source grows, shrinks, and the log says so ---------------------------------------------------


def test_a_source_that_grows_past_the_cap_is_left_out_and_comes_back_when_it_shrinks(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="batch_exporter.store")
    store = filled_store(TOTAL)
    assert dropped(scrape(store))["logfiles:a/app"] == 0
    assert not caplog.records

    store.record_success(snapshot("logfiles:a/app", 51), 1001.0, 0.1)  # one more file matched
    series = scrape(store)
    assert dropped(series)["logfiles:a/app"] == 51
    assert "logfiles:a/app" not in source_series(series)
    assert value(series, "batch_exporter_series") == TOTAL - 50
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == ("series cap reached (global.max_series 141): sources left out of the "
                                   "exposition: 1 (51 series): logfiles:a/app")

    caplog.clear()
    store.record_success(snapshot("logfiles:a/app", 60), 1002.0, 0.1)  # the same sources left out: no new line
    assert dropped(scrape(store))["logfiles:a/app"] == 60
    assert not caplog.records

    store.record_success(snapshot("logfiles:a/app", 3), 1003.0, 0.1)  # files archived away
    series = scrape(store)
    assert dropped(series) == dict.fromkeys(SIZES, 0.0)
    assert source_series(series)["logfiles:a/app"] == 3
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "every source is exported again" in record.getMessage() and "logfiles:a/app" in record.getMessage()


def test_the_log_line_names_what_changed_and_only_the_first_twenty_of_many(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="batch_exporter.store")
    sizes = {f"checks:b{index:02d}": 2 for index in range(30)}
    store = filled_store(2 * 5, sizes)  # the first five kept
    store.payload()
    message = caplog.records[-1].getMessage()
    assert "left out of the exposition: 25 (50 series): checks:b05, checks:b06, " in message
    assert "checks:b24" in message and "checks:b25" not in message
    assert message.endswith("and 5 more (batch_exporter_series_dropped names them all)")

    store.record_success(snapshot("checks:b00", 0), 1001.0, 0.1)  # room for one more
    store.payload()
    message = caplog.records[-1].getMessage()
    assert ": 24 (48 series): checks:b06, " in message and message.endswith("; exported again: checks:b05")


# --- cost: the cap is worked out once per change, never per scrape ------------------------------------------


def count_calls(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    calls: list[int] = []
    original = getattr(store_module, name)

    def counted(*args: object) -> object:
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(store_module, name, counted)
    return calls


@pytest.mark.parametrize("limit", [TOTAL, 62])  # under the cap, over it
def test_scrapes_between_changes_cost_no_render_and_no_cap_work(monkeypatch: pytest.MonkeyPatch,
                                                                 limit: int) -> None:
    renders = count_calls(monkeypatch, "render")
    capping = count_calls(monkeypatch, "cap_series")
    store = filled_store(limit)
    first = store.payload()
    for _ in range(50):
        assert store.payload() is first
    assert (len(renders), len(capping)) == (1, 1)
    store.view()  # a one-off exposition of the same state (`once`, the drills)
    assert len(capping) == 1

    store.record_success(snapshot("logscan:a/app", 8), 1001.0, 0.1)
    for _ in range(50):
        store.payload()
    assert (len(renders), len(capping)) == (2, 2)


# --- the exporter as a process --------------------------------------------------------------------------------


def test_an_exporter_over_its_cap_leaves_the_glob_out_says_so_and_takes_it_back(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    for index in range(60):
        (logs / f"part-{index:02d}.log").write_text("started\n")
    config = tmp_path / "exporter.yml"
    batches = "".join(f"  {name}:\n    schedule: {{cron: '0 1 * * *'}}\n" for name in ("a", "b", "c"))
    config.write_text(
        f"global:\n  log_poll_interval: 1s\n  state_dir: '{tmp_path / 'state'}'\n  max_series: 100\n"
        f"batches:\n{batches}"
        "  big:\n    schedule: {cron: '0 1 * * *'}\n"
        f"    logs:\n      app: {{path: '{logs}/*.log', max_path_series: 60, patterns: {{error: ' ERROR '}}}}\n")
    glob = "logfiles:big/app"
    sources = {"config:a", "config:b", "config:c", "config:big", glob, "logscan:big/app"}

    def counted(series: Series) -> int:
        return sum(1 for name, _ in series if not name.startswith("batch_exporter_"))

    def polled(series: Series, source: str) -> bool:
        return value(series, "batch_exporter_source_poll_duration_seconds", source=source) is not None

    with running_exporter(config, tmp_path) as exporter:
        series = exporter.wait_for(lambda s: all(polled(s, source) for source in sources),
                                   what="every source polled")
        assert value(series, "batch_exporter_series_dropped", source=glob) == 2 * 60 + 3  # size, mtime; 3 per log
        assert value(series, "batch_exporter_series_limit") == 100
        assert value(series, "batch_exporter_series") == counted(series) == 4 * 5 + 7  # configs, the scan
        assert not any(name.startswith("batch_log_file") for name, _ in series)
        for source in sources - {glob}:
            assert value(series, "batch_exporter_series_dropped", source=source) == 0
        assert value(series, "batch_exporter_source_up", source=glob) == 1
        log_text = exporter.log_path.read_text()
        assert f"series cap reached (global.max_series 100): sources left out of the exposition: 1 (123 series): " \
               f"{glob}\n" in log_text

        for path in sorted(logs.iterdir())[10:]:
            path.unlink()
        series = exporter.wait_for(lambda s: value(s, "batch_log_files", batch="big", log="app") == 10,
                                   what="the glob's series back")
        assert value(series, "batch_exporter_series_dropped", source=glob) == 0
        assert value(series, "batch_exporter_series") == counted(series) == 20 + 7 + 2 * 10 + 3
        # written before the scrape that showed it was answered; a poll amid the deletions may have come first
        assert re.search(rf"every source is exported again \(\d+ series\); back: {glob}\n",
                         exporter.log_path.read_text())


def test_a_fleet_named_like_a_batch_is_a_unit_of_its_own() -> None:
    # a fleet too big for the cap must not take the batch of the same name with it
    snapshots = {name: snapshot(name, size) for name, size in
                 (("config:agent", 5), ("runs:agent", 20), ("fleet:agent", 500), ("checks:agent", 4))}
    _, cap = cap_series(snapshots, ["config:agent", "runs:agent", "checks:agent", "fleet:agent"], 100)
    assert dict(cap.dropped) == {"config:agent": 0, "runs:agent": 0, "checks:agent": 0, "fleet:agent": 500}
