"""One reader of the run table (sources/run_table.py): the statements a poll sends stay within the budget
its deadline is built from, that budget is reached by the worst poll, and rerun-check reads the rows the
exporter reads, with the same statements."""
from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from batch_exporter.config import Config, parse_config
from batch_exporter.database import Database, QueryError, Row, open_database
from batch_exporter.rerun import gather
from batch_exporter.runsummary import MAX_ATTEMPTS_WITH_RECORDS
from batch_exporter.sources.errors import SourceError
from batch_exporter.sources.run_columns import MissingColumns
from batch_exporter.sources.run_table import RunTable, probe_columns
from batch_exporter.sources.runs import RunsSource
from db_servers import odbc_connection_string, requires_odbc, scratch_table

NOW = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
ATTEMPTS = MAX_ATTEMPTS_WITH_RECORDS + 5  # more than one poll reads the records of
RECORDS_QUERY = "SELECT state, COUNT(*) FROM {records} WHERE run_id = ? GROUP BY state"


class CountingDatabase(Database):
    """Passes every statement on and keeps it, with its parameters and rows (None when it failed);
    `refuse` may fail one instead (a statement's text -> the error to raise, or None)."""

    def __init__(self, db: Database, refuse: Callable[[str], QueryError | None] = lambda sql: None) -> None:
        self.name = db.name
        self._db = db
        self._refuse = refuse
        self.sent: list[tuple[str, tuple[object, ...], list[Row] | None]] = []

    def query(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        rows: list[Row] | None = None
        try:
            error = self._refuse(sql)
            if error is not None:
                raise error
            rows = self._db.query(sql, params)
        finally:
            self.sent.append((sql, tuple(params), rows))  # a refused one too: it was sent
        return rows

    def take(self) -> int:
        """Statements sent since the last take."""
        count = len(self.sent)
        self.sent.clear()
        return count

    def close(self) -> None:
        self._db.close()


def refuse_first(matching: Callable[[str], bool], error: QueryError) -> Callable[[str], QueryError | None]:
    """Refuse the first statement `matching` accepts with `error`, once: a transient failure."""
    refused: list[str] = []

    def refuse(sql: str) -> QueryError | None:
        if refused or not matching(sql):
            return None
        refused.append(sql)
        return error
    return refuse


def is_combined_probe(sql: str) -> bool:
    return "WHERE 1 = 0" in sql and "," in sql.split("FROM")[0]


def is_sample(sql: str) -> bool:
    return sql.startswith("SELECT MAX(started_at)")


def failed_attempts() -> list[tuple[str, str, datetime, datetime]]:
    """ATTEMPTS failed runs of one local date (no business date column), none of them a success: the
    search for a success before the window runs."""
    first = NOW.replace(hour=0, minute=1)
    return [(str(n), "NG", first + timedelta(minutes=5 * n), first + timedelta(minutes=5 * n + 2))
            for n in range(ATTEMPTS)]


def batch_yaml(database: str, table: str, records: str) -> str:
    return (f"batches:\n  b:\n    database: {database}\n"
            f"    runs: {{table: {table}, status: {{success: [OK], failed: [NG]}}, lookback: 1d}}\n"
            f"    records: {{query: '{RECORDS_QUERY.format(records=records)}', pending_states: [OPEN]}}\n")


def sqlite_config(tmp_path: Path, runs: Sequence[tuple[object, ...]]) -> Config:
    db = tmp_path / "runs.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE batch_run (run_id TEXT, status TEXT, started_at TEXT, ended_at TEXT)")
    conn.execute("CREATE TABLE batch_record (run_id TEXT, state TEXT)")
    conn.executemany("INSERT INTO batch_run VALUES (?, ?, ?, ?)",
                     [(r[0], r[1], *(f"{t:%Y-%m-%d %H:%M:%S}" for t in r[2:])) for r in runs])
    conn.executemany("INSERT INTO batch_record VALUES (?, 'OPEN')", [(r[0],) for r in runs])
    conn.commit()
    conn.close()
    return parse_config(f"databases: {{l: {{sqlite: '{db}'}}}}\n" + batch_yaml("l", "batch_run", "batch_record"),
                        "x.yml")


@contextmanager
def databases(open_one: Callable[[], Database]) -> Iterator[Callable[[], Database]]:
    """A way to open the database again and again, every one closed at the end."""
    opened: list[Database] = []

    def open_db() -> Database:
        opened.append(open_one())
        return opened[-1]
    try:
        yield open_db
    finally:
        for db in opened:
            db.close()


def sqlite_databases(config: Config) -> contextlib.AbstractContextManager[Callable[[], Database]]:
    return databases(lambda: open_database("l", sqlite=config.databases["l"].sqlite))


def runs_source(config: Config, db: Database, clock: list[float]) -> RunsSource:
    text = config.databases[config.batches["b"].database or ""].sqlite is not None
    return RunsSource("b", config.batches["b"], db, text_timestamps=text, clock=lambda: clock[0])


def assert_budget_exact(config: Config, open_db: Callable[[], Database]) -> None:
    """The worst first poll, and the worst later poll, send exactly what the budget allows; other polls
    send no more."""
    batch = config.batches["b"]
    assert batch.runs is not None
    table = RunTable("b", batch.runs, batch.records, open_db().query)
    first_budget, later_budget = table.max_statements_per_poll(), table.max_statements_per_poll(first_poll=False)
    clock = [NOW.timestamp()]

    # an ordinary first poll, then later polls
    db = CountingDatabase(open_db())
    source = runs_source(config, db, clock)
    assert source.max_statements_per_poll == first_budget
    source.poll()
    ordinary_first = db.take()
    source.poll()
    ordinary_later = db.take()
    assert ordinary_first <= first_budget and ordinary_later <= later_budget
    # two column probes, the sample, the window, the success before it, the records; then the window and
    # the records
    assert (ordinary_first, ordinary_later) == (5 + MAX_ATTEMPTS_WITH_RECORDS, 1 + MAX_ATTEMPTS_WITH_RECORDS)

    # worst first poll: the mapped columns refused once together (a transient error), so each is probed
    db = CountingDatabase(open_db(), refuse_first(is_combined_probe, QueryError("query", "refused once")))
    source = runs_source(config, db, clock)
    source.poll()
    assert db.take() == first_budget

    # worst later poll: the first stopped at the sample (timed out), so the next samples, reads the window,
    # searches before it and reads the records
    db = CountingDatabase(open_db(), refuse_first(is_sample, QueryError("timeout", "timed out once")))
    source = runs_source(config, db, clock)
    with pytest.raises(SourceError):
        source.poll()
    db.take()
    source.poll()
    assert db.take() == later_budget


def test_a_polls_statements_stay_within_the_budget_and_the_worst_reaches_it(tmp_path: Path) -> None:
    config = sqlite_config(tmp_path, failed_attempts())
    with sqlite_databases(config) as open_db:
        assert_budget_exact(config, open_db)
        batch = config.batches["b"]
        assert batch.runs is not None
        budget = RunTable("b", batch.runs, batch.records, open_db().query).max_statements_per_poll()
    # seven column probes at most, the sample, the window, the success before it, the records: the
    # exporter's deadline, which counted 5 + MAX_ATTEMPTS_WITH_RECORDS statements, fell short of it
    assert budget == 7 + 3 + MAX_ATTEMPTS_WITH_RECORDS > 5 + MAX_ATTEMPTS_WITH_RECORDS


def test_the_exporters_poll_deadline_lets_every_statement_of_the_worst_poll_run_out(tmp_path: Path) -> None:
    """app.build_sources gives the runs source connect_timeout + budget x query_timeout + a margin."""
    from batch_exporter.app import build_sources, open_databases, poll_deadline

    config = sqlite_config(tmp_path, failed_attempts())
    databases = open_databases(config)
    try:
        scheduled = next(s for s in build_sources(config, databases) if s.source.name == "runs:b")
        assert isinstance(scheduled.source, RunsSource)
        db_config = config.databases["l"]
        worst = 7 + 3 + MAX_ATTEMPTS_WITH_RECORDS
        assert scheduled.deadline == poll_deadline(db_config, worst)
        assert scheduled.deadline is not None
        assert scheduled.deadline >= db_config.connect_timeout + worst * db_config.query_timeout
    finally:
        for database in databases.values():
            database.close()


def test_without_records_the_budget_leaves_them_out(tmp_path: Path) -> None:
    config = sqlite_config(tmp_path, failed_attempts())
    batch = config.batches["b"]
    assert batch.runs is not None
    with sqlite_databases(config) as open_db:
        with_records = RunTable("b", batch.runs, batch.records, open_db().query)
        without = RunTable("b", batch.runs, None, open_db().query)
    assert with_records.max_statements_per_poll() - without.max_statements_per_poll() == MAX_ATTEMPTS_WITH_RECORDS


@contextmanager
def postgresql_config() -> Iterator[Config]:
    runs = [(r[0], r[1], r[2].replace(tzinfo=None), r[3].replace(tzinfo=None)) for r in failed_attempts()]
    with ExitStack() as stack:
        run_table = stack.enter_context(scratch_table(
            "postgresql", "run_id VARCHAR(20), status VARCHAR(10), started_at TIMESTAMP, ended_at TIMESTAMP", runs))
        records = stack.enter_context(scratch_table(
            "postgresql", "run_id VARCHAR(20), state VARCHAR(20)", [(r[0], "OPEN") for r in runs]))
        odbc = odbc_connection_string("postgresql")
        yield parse_config(f"databases: {{pg: {{odbc: '{odbc}'}}}}\n" + batch_yaml("pg", run_table, records), "x.yml")


@requires_odbc("postgresql")
def test_the_budget_holds_on_postgresql() -> None:
    with postgresql_config() as config, databases(
            lambda: open_database("pg", odbc=config.databases["pg"].odbc)) as open_db:
        assert_budget_exact(config, open_db)


def test_rerun_check_and_the_exporter_send_the_same_statements_and_read_the_same_rows(tmp_path: Path) -> None:
    first = NOW - timedelta(hours=2)
    runs = [("1", "NG", first, first + timedelta(minutes=10)),
            ("2", "OK", first + timedelta(minutes=30), first + timedelta(minutes=40))]
    config = sqlite_config(tmp_path, runs)
    with sqlite_databases(config) as open_db:
        exporter_db = CountingDatabase(open_db())
        runs_source(config, exporter_db, [NOW.timestamp()]).poll()
        check_db = CountingDatabase(open_db())
        ev = gather(config, "b", now=NOW, open_db=lambda name, cfg: check_db)

    assert [a.run_id for a in ev.attempts] == ["1", "2"] and ev.run_table_error is None
    window = [sent for sent in exporter_db.sent if "started_at >= ?" in sent[0]]
    assert len(window) == 1 and len(window[0][2] or []) == 2
    # probes, sample, window and each attempt's records: one reader, the same statements and rows
    assert check_db.sent == exporter_db.sent


def test_check_configs_probe_is_the_readers_probe(tmp_path: Path) -> None:
    config = sqlite_config(tmp_path, [])
    batch = config.batches["b"]
    assert batch.runs is not None
    wrong = batch.runs.model_copy(update={"columns": batch.runs.columns.model_copy(update={"status": "state"})})
    with sqlite_databases(config) as open_db:
        resolved = probe_columns(batch.runs, open_db().query)
        with pytest.raises(MissingColumns, match=r"columns\.status \('state'\)"):
            probe_columns(wrong, open_db().query)
    assert resolved.columns == batch.runs.columns and resolved.business_date_note is not None
    assert resolved.business_date_note.startswith("the run table batch_run has no business date column")


def test_both_refuse_start_times_that_contradict_runs_timestamps_alike(tmp_path: Path) -> None:
    config = sqlite_config(tmp_path, [])
    conn = sqlite3.connect(tmp_path / "runs.db")  # epoch milliseconds, which auto reads as seconds
    conn.execute("DROP TABLE batch_run")
    conn.execute("CREATE TABLE batch_run (run_id TEXT, status TEXT, started_at INTEGER, ended_at INTEGER)")
    conn.execute("INSERT INTO batch_run VALUES ('1', 'OK', ?, NULL)", (int(NOW.timestamp() * 1000),))
    conn.commit()
    conn.close()
    with sqlite_databases(config) as open_db:
        with pytest.raises(SourceError) as raised:
            runs_source(config, open_db(), [NOW.timestamp()]).poll()
        ev = gather(config, "b", now=NOW, open_db=lambda name, cfg: open_db())
    assert raised.value.reason == "data"
    assert str(raised.value).startswith("batches.b.runs.timestamps: column started_at holds 13-digit numbers")
    assert ev.run_table_error == str(raised.value)
