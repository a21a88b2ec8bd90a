"""The embedded demo: a SQLite card-authorization batch with thirty nights of history, logs and a simulator.

The schema is deliberately not the exporter's vocabulary (its own table and column names, one-letter
status codes, naive Asia/Tokyo timestamps as text), so the shipped demo.yml shows the mapping a real
installation needs.

`why_not_demo` is the one test of "this database is the demo's": `prepare_demo` makes it before it
deletes anything in a folder, and `batch-exporter drill` before it writes anything.
"""
from __future__ import annotations

import logging
import random
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from ..tailing.state import evidence_file_name, state_file_name
from .demo_sim import (
    TOKYO,
    AuthRun,
    DemoPaths,
    DemoSimulator,
    DemoWriter,
    RunStatus,
    SettlementRun,
    Step,
    open_writer_connection,
    play,
)

if TYPE_CHECKING:
    from ..webconfig import WebConfig

__all__ = ["DemoPaths", "DemoSimulator", "NotADemoError", "create_demo", "prepare_demo", "demo_config_text",
           "serve_demo", "why_not_demo", "schema_difference", "read_schema", "open_read_only", "SCHEMA"]

log = logging.getLogger(__name__)

HISTORY_NIGHTS = 30
# demo.yml's schedules expect a night every 3 minutes; shorter nights still start after every cron time.
CONFIG_INTERVAL_SECONDS = 180.0

SCHEMA = """
CREATE TABLE job_execution (
    exec_id     INTEGER PRIMARY KEY,
    job_name    TEXT    NOT NULL,
    biz_date    TEXT    NOT NULL,                 -- business date processed, 'YYYY-MM-DD'
    exec_status TEXT    NOT NULL CHECK (exec_status IN ('R', 'C', 'E', 'A')),
                                                  -- Running, Complete, Error, Abended
    start_ts    TEXT    NOT NULL,                 -- naive Asia/Tokyo 'YYYY-MM-DD HH:MM:SS'
    end_ts      TEXT,
    exit_code   INTEGER,
    host_name   TEXT
);
-- latest run of a job and the lookback window: one index range scan
CREATE INDEX ix_job_execution_job_start ON job_execution (job_name, start_ts);
-- attempts per business date, settlement totals
CREATE INDEX ix_job_execution_job_biz ON job_execution (job_name, biz_date);

CREATE TABLE auth_request (
    request_id   INTEGER PRIMARY KEY,
    exec_id      INTEGER NOT NULL REFERENCES job_execution (exec_id),
    merchant_ref TEXT    NOT NULL,                -- the merchant's reference: the same in a re-run
    card_token   TEXT    NOT NULL,
    masked_pan   TEXT    NOT NULL,                -- first 6 + last 4 of issuer test numbers only
    amount_yen   INTEGER NOT NULL,
    auth_state   TEXT    NOT NULL CHECK (auth_state IN
                             ('RECEIVED', 'AUTHORIZING', 'APPROVED', 'DECLINED', 'ERROR')),
    auth_code    TEXT,
    updated_ts   TEXT    NOT NULL
);
CREATE INDEX ix_auth_request_exec_state ON auth_request (exec_id, auth_state);
CREATE INDEX ix_auth_request_state_ref ON auth_request (auth_state, merchant_ref);

CREATE TABLE settlement (
    biz_date            TEXT PRIMARY KEY,
    exec_id             INTEGER NOT NULL REFERENCES job_execution (exec_id),
    approved_count      INTEGER NOT NULL,
    approved_amount_yen INTEGER NOT NULL,
    settled_ts          TEXT    NOT NULL
);
"""


SchemaRow = tuple[str, str, str, str]


class NotADemoError(Exception):
    """A folder or database is not the demo's: the demo (and the drill) will not write to it or delete it."""


def open_read_only(database: Path) -> sqlite3.Connection:
    """A connection that can neither write nor create `database` (a missing file is an error)."""
    return sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True, timeout=10)


def read_schema(conn: sqlite3.Connection) -> frozenset[SchemaRow]:
    """Every (type, name, table, sql) row of sqlite_master."""
    rows = conn.execute("SELECT type, name, tbl_name, COALESCE(sql, '') FROM sqlite_master").fetchall()
    return frozenset((str(a), str(b), str(c), str(d)) for a, b, c, d in rows)


def demo_schema() -> frozenset[SchemaRow]:
    """sqlite_master of a freshly created demo database."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(SCHEMA)
        return read_schema(conn)
    finally:
        conn.close()


def schema_difference(found: frozenset[SchemaRow]) -> str | None:
    """None when `found` is exactly the demo's schema (tables, columns, constraints, indexes); else what differs."""
    expected = demo_schema()
    if found == expected:
        return None
    extra = sorted(name for _, name, _, _ in found - expected)
    missing = sorted(name for _, name, _, _ in expected - found)
    parts = [f"not in the demo: {', '.join(extra)}"] if extra else []
    parts += [f"missing or different: {', '.join(missing)}"] if missing else []
    return "its schema is not the demo's (" + "; ".join(parts) + ")"


def why_not_demo(database: Path, *, empty_ok: bool = False) -> str | None:
    """None when `database` is the demo's; otherwise what differs (read-only look, never a write).

    With `empty_ok`, a database without any table also passes: it holds nothing to lose.
    """
    if not database.is_file():
        return f"{database} {'is not a file' if database.exists() else 'does not exist'}"
    try:
        conn = open_read_only(database)
        try:
            found = read_schema(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return f"{database} is not a readable SQLite database ({exc})"
    if empty_ok and not found:
        return None
    return schema_difference(found)


def _tokyo(day: date, hour: int, minute: int) -> float:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TOKYO).timestamp()


def history_steps(now: datetime, seed: int) -> list[Step]:
    """Thirty nights up to the last one finished by `now`: runs at 02:00 Asia/Tokyo for the previous day.

    Eleven nights back the run fails and is re-run at 03:20; four nights back it abends mid-way (rows
    left AUTHORIZING) and is re-run at 03:05. The settlement report runs at 04:30 every night.
    """
    rng = random.Random(seed)
    today = now.astimezone(TOKYO).date()
    last = today if _tokyo(today, 2, 0) + 80 * 60 <= now.timestamp() else today - timedelta(days=1)
    failed, abended = last - timedelta(days=11), last - timedelta(days=4)
    steps: list[Step] = []
    for back in range(HISTORY_NIGHTS - 1, -1, -1):
        night = last - timedelta(days=back)
        biz = night - timedelta(days=1)
        start = _tokyo(night, 2, 0) + rng.uniform(0, 40)
        duration = rng.uniform(40, 70) * 60
        runs = [AuthRun(biz, 1, start, duration, RunStatus.COMPLETED, random.Random(rng.random()))]
        if night in (failed, abended):
            runs[0].outcome, runs[0].fail_step = (RunStatus.FAILED, 2) if night == failed else (RunStatus.ABENDED, 3)
            rerun_at = _tokyo(night, 3, 20 if night == failed else 5) + rng.uniform(0, 60)
            runs.append(AuthRun(biz, 2, rerun_at, rng.uniform(45, 54) * 60, RunStatus.COMPLETED,
                                random.Random(rng.random())))
        for run in runs:
            steps += run.steps()
        settlement = SettlementRun(biz, _tokyo(night, 4, 30) + rng.uniform(0, 30), rng.uniform(4, 9) * 60)
        if settlement.start + settlement.duration <= now.timestamp():
            steps += settlement.steps()
    return steps


def create_demo(folder: Path, *, now: datetime, seed: int = 7) -> DemoPaths:
    """Create `folder/payments.db` (WAL mode) and `folder/logs/` with thirty nights of history before `now`.

    The same `now` and `seed` give the same database and logs. Refuses to overwrite an existing demo.
    """
    if now.tzinfo is None:
        raise ValueError("create_demo: `now` must be timezone-aware (e.g. datetime.now(timezone.utc))")
    paths = DemoPaths(folder)
    if paths.database.exists():
        raise FileExistsError(f"{paths.database} already exists; remove it or use prepare_demo() to reset")
    folder.mkdir(parents=True, exist_ok=True)
    paths.logs.mkdir(exist_ok=True)
    conn = open_writer_connection(paths.database)
    try:
        # schema and history in one transaction: an interrupted creation leaves an empty database,
        # which the next prepare_demo may replace, never a half-made schema that it would refuse
        conn.executescript("BEGIN;\n" + SCHEMA)
        play(DemoWriter(paths, conn), history_steps(now, seed))
        conn.commit()
    finally:
        conn.close()
    return paths


def _template() -> str:
    return resources.files("batch_exporter.practice").joinpath("demo_data", "demo.yml").read_text(encoding="utf-8")


def demo_config_text(folder: Path) -> str:
    """The shipped demo.yml with `${DEMO_DIR}` replaced by `folder` (all its uses are single-quoted)."""
    # `$` starts a reference in the config loader and `'` ends a single-quoted YAML scalar
    literal = str(folder.resolve()).replace("$", "$$").replace("'", "''")
    return _template().replace("${DEMO_DIR}", literal)


def _owned_files(paths: DemoPaths) -> list[Path]:
    """The files a demo creates in its folder: its database, config and logs, and the exporter's log
    positions and log evidence under state/ (for the batches and logs demo.yml names)."""
    database = paths.database
    batches = yaml.safe_load(_template())["batches"]
    positions = [state_file_name(batch, log) for batch, spec in batches.items() for log in spec.get("logs", {})]
    positions += [evidence_file_name(batch) for batch, spec in batches.items() if spec.get("logs") and spec.get("runs")]
    return [database, database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm"),
            paths.config, paths.sdk_log, paths.settlement_log, *sorted(paths.logs.glob("auth-batch-*.log")),
            *(paths.state / name for name in positions),
            *(temp for name in positions for temp in sorted(paths.state.glob(f".{name}.*.tmp")))]


def _check_replaceable(paths: DemoPaths) -> None:
    """Raise NotADemoError unless every file prepare_demo would delete or overwrite is an earlier demo's."""
    database = paths.database
    advice = ("The demo starts afresh by deleting its own files, and deletes or overwrites nothing else: give "
              "a new or empty folder, or one made by `batch-exporter demo --dir`.")
    if database.exists():
        # an empty database is what an interrupted creation leaves behind
        if (reason := why_not_demo(database, empty_ok=True)) is not None:
            raise NotADemoError(f"{paths.folder} holds {database.name}, which is not the demo's database: "
                                f"{reason}.\n{advice}")
        return
    present = [path for path in _owned_files(paths) if path.exists()]
    if present:
        names = ", ".join(str(path.relative_to(paths.folder)) for path in present)
        raise NotADemoError(f"{paths.folder} holds {names} but no demo database ({database.name}): "
                            f"not known to be the demo's.\n{advice}")


def _remove_previous(paths: DemoPaths) -> None:
    """Delete what an earlier demo in this folder created, and nothing else (NotADemoError if not a demo's)."""
    _check_replaceable(paths)
    for path in _owned_files(paths):
        path.unlink(missing_ok=True)
    if paths.state.is_dir() and not any(paths.state.iterdir()):
        paths.state.rmdir()


def prepare_demo(folder: Path, *, interval: float = CONFIG_INTERVAL_SECONDS, seed: int = 7,
                 now: datetime | None = None) -> tuple[Path, DemoSimulator]:
    """Fresh demo data in `folder` and its config file; returns (config path, simulator not yet started).

    A demo left in the folder by an earlier start is replaced (its history is relative to now). A
    folder holding a `payments.db` that is not the demo's, or the demo's other file names without its
    database, raises NotADemoError before anything is deleted or written.
    """
    paths = DemoPaths(folder)
    _remove_previous(paths)
    create_demo(folder, now=now or datetime.now(UTC), seed=seed)
    paths.config.write_text(demo_config_text(folder), encoding="utf-8")
    if interval > CONFIG_INTERVAL_SECONDS:
        log.warning("demo nights every %gs are longer than the 3-minute schedule in %s: the demo will "
                    "report missed runs", interval, paths.config)
    return paths.config, DemoSimulator(paths, interval)


def serve_demo(folder: Path | None, *, interval: float | None, listen: str, web_config: WebConfig | None,
               around: Callable[[Path, Path], AbstractContextManager[object]] | None = None) -> int:
    """`batch-exporter demo`: fresh demo data, the simulator, and the exporter serving its demo.yml until
    SIGINT/SIGTERM; returns the exit code (1 when the folder is not a demo's or the config does not load).

    `folder` defaults to a new temporary folder. `around(folder, config path)` is entered once the config
    has loaded and left after the simulator has stopped (`demo --stack` runs Prometheus and Alertmanager
    there); without it, one line says where the data is.
    """
    from ..config import ConfigError, load_config
    from ..service import serve

    folder = folder or Path(tempfile.mkdtemp(prefix="batch-exporter-demo-"))
    try:
        config_path, simulator = prepare_demo(folder, interval=interval or CONFIG_INTERVAL_SECONDS)
    except NotADemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"demo: cannot make the demo data in {folder}: {exc}", file=sys.stderr)
        return 1
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(f"configuration error:\n{exc}", file=sys.stderr)
        return 1
    if around is None:
        print(f"demo data in {folder}; config {config_path}", flush=True)
    with around(folder, config_path) if around is not None else nullcontext():
        simulator.start()
        try:
            return serve(config, config_path, listen, web_config)
        finally:
            simulator.stop()
