"""Store and rendering: merged families, health, render once per change."""
from __future__ import annotations

import gzip

import pytest

from batch_exporter.snapshot import Sample, SampleBuilder, Snapshot
from batch_exporter.store import Store, View


def snapshot(source: str, batch: str, value: float) -> Snapshot:
    out = SampleBuilder()
    out.add("batch_run_attempts", value, batch=batch)
    out.add("batch_log_lines_total", 10, batch=batch, log="app")
    return out.build(source)


def test_families_merge_across_sources_and_health_is_rendered() -> None:
    store = Store(["runs:a", "runs:b", "checks:a"])
    store.record_success(snapshot("runs:a", "a", 1), 1000.0, 0.25)
    store.record_success(snapshot("runs:b", "b", 2), 1001.0, 0.5)
    store.record_failure("checks:a", "timeout", 3.0)
    text = store.payload()[0].decode()
    assert text.count("# TYPE batch_run_attempts gauge") == 1
    assert 'batch_run_attempts{batch="a"} 1.0' in text and 'batch_run_attempts{batch="b"} 2.0' in text
    assert 'batch_log_lines_total{batch="a",log="app"} 10.0' in text
    assert 'batch_exporter_source_up{source="checks:a"} 0.0' in text
    assert 'batch_exporter_source_up{source="runs:a"} 1.0' in text
    assert 'batch_exporter_source_errors_total{reason="timeout",source="checks:a"} 1.0' in text
    assert 'batch_exporter_source_last_success_timestamp_seconds{source="runs:b"} 1001.0' in text
    assert "batch_exporter_build_info{version=" in text


def test_failure_keeps_last_good_snapshot_and_readiness() -> None:
    store = Store(["runs:a"])
    assert not store.all_polled()
    store.record_success(snapshot("runs:a", "a", 3), 1000.0, 0.1)
    store.record_failure("runs:a", "connect", 0.1)
    assert store.all_polled()
    text = store.payload()[0].decode()
    assert 'batch_run_attempts{batch="a"} 3.0' in text
    assert 'batch_exporter_source_up{source="runs:a"} 0.0' in text


def test_render_only_on_change() -> None:
    store = Store(["runs:a"], min_render_interval=0)
    store.record_success(snapshot("runs:a", "a", 1), 1000.0, 0.1)
    first = store.payload()
    assert store.payload() is first
    assert gzip.decompress(first[1]) == first[0]
    store.record_success(snapshot("runs:a", "a", 2), 1001.0, 0.1)
    second = store.payload()
    assert second is not first and b'batch_run_attempts{batch="a"} 2.0' in second[0]


def test_a_burst_of_changes_is_rendered_once_per_interval() -> None:
    now = [500.0]
    store = Store(["runs:a"], min_render_interval=60, monotonic=lambda: now[0])
    store.record_success(snapshot("runs:a", "a", 1), 1000.0, 0.1)
    first = store.payload()
    store.record_success(snapshot("runs:a", "a", 2), 1001.0, 0.1)
    now[0] += 59.5
    assert store.payload() is first  # within the interval: the previous bytes
    store.record_success(snapshot("runs:a", "a", 3), 1002.0, 0.1)
    now[0] += 0.5  # the interval has passed: the latest change is rendered
    second = store.payload()
    assert b'batch_run_attempts{batch="a"} 3.0' in second[0]
    store.record_success(snapshot("runs:a", "a", 4), 1003.0, 0.1)
    now[0] += 59.5  # the interval restarts at the last render, not at the first
    assert store.payload() is second
    now[0] += 0.5
    assert b'batch_run_attempts{batch="a"} 4.0' in store.payload()[0]


def test_a_partial_snapshot_replaces_the_last_one_while_the_source_is_down() -> None:
    store = Store(["logscan:a/app"], min_render_interval=0)
    store.record_failure("logscan:a/app", "io", 0.1, snapshot("logscan:a/app", "a", 1))  # a first poll that failed
    text = store.payload()[0].decode()
    assert 'batch_run_attempts{batch="a"} 1.0' in text  # its series appear at once
    assert 'batch_exporter_source_up{source="logscan:a/app"} 0.0' in text
    assert "batch_exporter_source_last_success_timestamp_seconds" not in text
    store.record_success(snapshot("logscan:a/app", "a", 2), 1000.0, 0.1)
    store.record_failure("logscan:a/app", "state", 0.1, snapshot("logscan:a/app", "a", 5))
    text = store.payload()[0].decode()
    assert 'batch_run_attempts{batch="a"} 5.0' in text
    assert 'batch_exporter_source_up{source="logscan:a/app"} 0.0' in text
    assert 'batch_exporter_source_errors_total{reason="io",source="logscan:a/app"} 1.0' in text
    assert 'batch_exporter_source_errors_total{reason="state",source="logscan:a/app"} 1.0' in text
    assert 'batch_exporter_source_last_success_timestamp_seconds{source="logscan:a/app"} 1000.0' in text
    store.record_failure("logscan:a/app", "io", 0.1)  # nothing measured: the last snapshot stays
    assert 'batch_run_attempts{batch="a"} 5.0' in store.payload()[0].decode()


def test_a_partial_snapshot_of_another_source_is_refused() -> None:
    store = Store(["runs:a", "runs:b"])
    with pytest.raises(ValueError, match="runs:b"):
        store.record_failure("runs:a", "io", 0.1, snapshot("runs:b", "b", 1))


def test_the_metrics_reference_document_matches_the_contract() -> None:
    from pathlib import Path

    from batch_exporter.metrics import reference_markdown

    document = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
    assert document.read_text(encoding="utf-8") == reference_markdown(), "regenerate docs/metrics.md"


def _reference_render(view: View) -> bytes:
    """The exposition as prometheus_client writes it, which store.render must equal byte for byte."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    from batch_exporter.metrics import CONTRACT
    from batch_exporter.store import _health_samples

    by_name: dict[str, list[Sample]] = {}
    for snap in view.snapshots:
        for sample in snap.samples:
            by_name.setdefault(sample.name, []).append(sample)
    by_name.update(_health_samples(view))

    class Collector:
        def collect(self):  # type: ignore[no-untyped-def]
            for spec in CONTRACT:
                if not by_name.get(spec.name):
                    continue
                kind = CounterMetricFamily if spec.kind == "counter" else GaugeMetricFamily
                family = kind(spec.name, spec.help, labels=list(spec.labels))
                for sample in by_name[spec.name]:
                    family.add_metric([value for _, value in sample.labels], sample.value)
                yield family

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())
    return generate_latest(registry)


def test_render_writes_what_prometheus_client_writes() -> None:
    from batch_exporter.store import render

    store = Store(["runs:a", "runs:b", "logscan:a/app"])
    odd = SampleBuilder()
    for value in (float("inf"), float("-inf"), float("nan"), 1234567.0, 1e22, -3.5e-7, 0.1, 17e8):
        odd.add("batch_run_attempts", value, batch=f"b{value!r}")
    odd.add("batch_run_business_date_info", 1, batch='quote " back \\ new\nline', business_date="ü 2026-01-02")
    odd.add("batch_log_matches_total", 3, batch="a", log="app", pattern="x")
    store.record_success(odd.build("runs:b"), 1000.0, 0.25)
    store.record_success(snapshot("runs:a", "a", 1), 1001.0, 0.5)
    store.record_failure("logscan:a/app", "timeout", 3.0)
    view = store.view()
    assert render(view) == _reference_render(view)
    assert store.payload()[0] == _reference_render(view)


def test_a_snapshot_s_lines_are_written_once_and_reused_until_it_is_replaced() -> None:
    from batch_exporter.store import RenderCache, render

    store = Store(["runs:a", "runs:b"], min_render_interval=0)
    first = snapshot("runs:a", "a", 1)
    store.record_success(first, 1000.0, 0.1)
    store.record_success(snapshot("runs:b", "b", 1), 1000.0, 0.1)
    cache = RenderCache()
    render(store.view(), cache)
    chunks = cache.chunks(first)
    store.record_success(snapshot("runs:b", "b", 2), 1001.0, 0.1)
    text = render(store.view(), cache)
    assert cache.chunks(first) is chunks  # runs:a unchanged: not written again
    assert b'batch_run_attempts{batch="b"} 2.0' in text
    assert text == _reference_render(store.view())


def test_the_cached_lines_are_slices_of_the_latest_exposition_and_hold_no_older_one() -> None:
    """A fleet's 10 MB of lines are kept once: each render points the cache at its own exposition, so the
    previous one is freed with the payload it served."""
    import gc

    from batch_exporter.store import RenderCache, render

    store = Store(["runs:a", "runs:b"], min_render_interval=0)
    unchanged = snapshot("runs:a", "a", 1)
    store.record_success(unchanged, 1000.0, 0.1)
    store.record_success(snapshot("runs:b", "b", 1), 1000.0, 0.1)
    cache = RenderCache()
    first = render(store.view(), cache)
    assert all(isinstance(lines, memoryview) and lines.obj is first for lines in cache.chunks(unchanged).values())
    store.record_success(snapshot("runs:b", "b", 2), 1001.0, 0.1)
    second = render(store.view(), cache)
    assert second == _reference_render(store.view())
    held = cache.chunks(unchanged)
    assert all(isinstance(lines, memoryview) and lines.obj is second for lines in held.values())
    assert bytes(held["batch_run_attempts"]) == b'batch_run_attempts{batch="a"} 1.0\n'
    gc.collect()
    assert not [ref for ref in gc.get_referrers(first) if isinstance(ref, memoryview)]  # first can be freed
