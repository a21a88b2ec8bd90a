"""The embedded demo: a SQLite card-authorization batch with thirty nights of history, logs and a simulator.

The schema is deliberately not the exporter's vocabulary (its own table and column names, one-letter
status codes, naive Asia/Tokyo timestamps as text), so the shipped demo.yml shows the mapping a real
installation needs.
"""
from __future__ import annotations

import logging
import random
import shutil
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path

from .demo_sim import (
    TOKYO,
    AuthRun,
    DemoPaths,
    DemoSimulator,
    DemoWriter,
    SettlementRun,
    Step,
    open_writer_connection,
    play,
)

__all__ = ["DemoPaths", "DemoSimulator", "create_demo", "prepare_demo", "demo_config_text", "SCHEMA"]

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
        runs = [AuthRun(biz, 1, start, duration, "C", random.Random(rng.random()))]
        if night in (failed, abended):
            runs[0].outcome, runs[0].fail_step = ("E", 2) if night == failed else ("A", 3)
            rerun_at = _tokyo(night, 3, 20 if night == failed else 5) + rng.uniform(0, 60)
            runs.append(AuthRun(biz, 2, rerun_at, rng.uniform(45, 54) * 60, "C", random.Random(rng.random())))
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
        conn.executescript(SCHEMA)
        writer = DemoWriter(paths, conn)
        conn.execute("BEGIN")
        play(writer, history_steps(now, seed))
        conn.commit()
    finally:
        conn.close()
    return paths


def demo_config_text(folder: Path) -> str:
    """The shipped demo.yml with `${DEMO_DIR}` replaced by `folder` (all its uses are single-quoted)."""
    template = resources.files("batch_exporter").joinpath("demo_data", "demo.yml").read_text(encoding="utf-8")
    # `$` starts a reference in the config loader and `'` ends a single-quoted YAML scalar
    literal = str(folder.resolve()).replace("$", "$$").replace("'", "''")
    return template.replace("${DEMO_DIR}", literal)


def _remove_previous(paths: DemoPaths) -> None:
    """Delete what an earlier demo in this folder created, and nothing else."""
    database = paths.database
    owned = [database, database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm"),
             paths.sdk_log, paths.settlement_log, paths.config, *paths.logs.glob("auth-batch-*.log")]
    for path in owned:
        path.unlink(missing_ok=True)
    if paths.state.is_dir():
        shutil.rmtree(paths.state)


def prepare_demo(folder: Path, *, interval: float = CONFIG_INTERVAL_SECONDS, seed: int = 7,
                 now: datetime | None = None) -> tuple[Path, DemoSimulator]:
    """Fresh demo data in `folder` and its config file; returns (config path, simulator not yet started).

    A demo left in the folder by an earlier start is replaced (its history is relative to now).
    """
    paths = DemoPaths(folder)
    _remove_previous(paths)
    create_demo(folder, now=now or datetime.now(UTC), seed=seed)
    paths.config.write_text(demo_config_text(folder), encoding="utf-8")
    if interval > CONFIG_INTERVAL_SECONDS:
        log.warning("demo nights every %gs are longer than the 3-minute schedule in %s: the demo will "
                    "report missed runs", interval, paths.config)
    return paths.config, DemoSimulator(paths, interval)
