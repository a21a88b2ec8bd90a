"""The scenario world of the end-to-end test: a run table in SQLite, log files and an exporter config.

The test plays the batches: it writes run rows, record rows and log lines the way a batch would, and
the exporter only reads them. Four batches share one configuration:

- `settlement`: healthy all along (runs on schedule, succeeds, a clean log, a check within bounds).
- `card-authorization`: not idempotent, with records and a double-authorization check; it dies
  mid-way, leaves rows pending, logs errors and is re-run blindly.
- `clearing-upload`: logs only, a vendor SDK log with a 4 KiB size limit that the test overfills.
- `ledger-export`: idempotent; re-run deliberately, the re-run takes longer than its maximum, and
  it logs errors: only warnings and infos.

Every batch is scheduled hourly at the minute `start` (about 14 minutes before the world is built),
so the schedule is satisfied and neither BatchRunMissed nor BatchNoRecentSuccess can come due
within the test: those need the grace (15 min) or the grace plus max_duration to pass after a
scheduled start that no run followed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

HEALTHY = "settlement"
CARD_AUTH = "card-authorization"
LOG_BATCH = "clearing-upload"
LEDGER = "ledger-export"
BATCHES = (HEALTHY, CARD_AUTH, LOG_BATCH, LEDGER)

SDK_LIMIT_BYTES = 4096
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"  # naive UTC text, as the batch writes it
MINUTE = timedelta(minutes=1)

SCHEMA = (
    "CREATE TABLE batch_run (run_id INTEGER PRIMARY KEY, job TEXT NOT NULL, biz_date TEXT NOT NULL, "
    "status TEXT NOT NULL, start_time TEXT NOT NULL, end_time TEXT)",
    "CREATE TABLE auth_request (req_id INTEGER PRIMARY KEY AUTOINCREMENT, run_id INTEGER NOT NULL, "
    "merchant_ref TEXT NOT NULL, state TEXT NOT NULL)",
    "CREATE TABLE settlement_day (biz_date TEXT PRIMARY KEY, approved_yen INTEGER, settled_yen INTEGER)",
)


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _text(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def _runs_block(job: str) -> str:
    return f"""
    database: runs
    runs:
      table: batch_run
      where: "job = '{job}'"
      columns: {{run_id: run_id, business_date: biz_date, status: status,
                started_at: start_time, ended_at: end_time}}
      status: {{success: [OK], failed: [NG, ABEND], running: [RUN]}}
      lookback: 14d
      timezone: UTC"""


@dataclass(frozen=True)
class LogLine:
    level: str
    text: str


class World:
    """The batches' database and logs under `root`, and the exporter configuration that reads them."""

    def __init__(self, root: Path, now: datetime | None = None) -> None:
        self.root = root
        self.db_path = root / "batches.db"
        self.logs = root / "logs"
        self.config_path = root / "batch-exporter.yml"
        now = now or _utc_now()
        # The scheduled start of the current business date: a whole minute, about 14 minutes ago.
        self.start = (now - 14 * MINUTE).replace(second=0)
        self.business_date = self.start.date().isoformat()
        self.previous_date = (self.start - timedelta(days=1)).date().isoformat()
        self._card_attempt_1 = 0
        self.card_log = self.logs / "card-authorization.log"
        self.sdk_log = self.logs / "sdk" / "clearing-sdk.log"
        self.ledger_log = self.logs / f"ledger-export-{self.start:%Y%m%d}.log"
        self.settlement_log = self.logs / "settlement.log"

    # --- configuration ------------------------------------------------------------------------------

    def config_text(self) -> str:
        schedule = f'schedule: {{cron: "{self.start.minute} * * * *", timezone: UTC, grace: 15m}}'
        return f"""# end-to-end scenario world (tests/e2e_world.py)
global:
  poll_interval: 1s
  log_poll_interval: 1s
databases:
  runs:
    sqlite: '{self.db_path}'
    query_timeout: 5s
batches:
  {HEALTHY}:{_runs_block(HEALTHY)}
    {schedule}
    max_duration: 90m
    idempotent: true
    checks:
      settlement_mismatch:
        query: "SELECT COUNT(*) FROM settlement_day WHERE approved_yen <> settled_yen"
        max: 0
    logs:
      report:
        path: '{self.settlement_log}'
        patterns: {{error: ' ERROR ', exception: 'Exception'}}
  {CARD_AUTH}:{_runs_block(CARD_AUTH)}
    records:
      query: "SELECT state, COUNT(*) FROM auth_request WHERE run_id = ? GROUP BY state"
      pending_states: [AUTHORIZING]
    {schedule}
    max_duration: 90m
    idempotent: false
    checks:
      double_authorized:
        query: >-
          SELECT COUNT(*) FROM (SELECT merchant_ref FROM auth_request WHERE state = 'APPROVED'
          GROUP BY merchant_ref HAVING COUNT(*) > 1) twice
        max: 0
    logs:
      app:
        path: '{self.card_log}'
        patterns: {{error: ' ERROR ', exception: 'Exception'}}
  {LOG_BATCH}:
    logs:
      sdk:
        path: '{self.sdk_log}'
        size_limit: 4KiB
        patterns: {{error: '\\[(?:ERROR|FATAL)\\]', timeout: 'timed out'}}
  {LEDGER}:{_runs_block(LEDGER)}
    {schedule}
    max_duration: 10m
    idempotent: true
    logs:
      app:
        path: '{self.logs}/ledger-export-*.log'
        patterns: {{error: ' ERROR '}}
"""

    # --- the quiet beginning ------------------------------------------------------------------------

    def build(self) -> Path:
        """Write the calm state every batch starts from; return the config path.

        settlement and ledger-export have succeeded for today's business date, card-authorization
        succeeded yesterday and today's run is in progress, clearing-upload's SDK log is at a quarter
        of its limit.
        """
        self.logs.mkdir(parents=True, exist_ok=True)
        self.sdk_log.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            for statement in SCHEMA:
                db.execute(statement)
            db.execute("INSERT INTO settlement_day VALUES (?, 1200000, 1200000)", (self.previous_date,))
        day = timedelta(days=1)
        self.add_run(HEALTHY, self.previous_date, "OK", self.start - day + MINUTE,
                     self.start - day + 4 * MINUTE)
        self.add_run(HEALTHY, self.business_date, "OK", self.start + MINUTE, self.start + 4 * MINUTE)
        self.add_run(LEDGER, self.business_date, "OK", self.start + MINUTE, self.start + 3 * MINUTE)
        yesterday = self.add_run(CARD_AUTH, self.previous_date, "OK", self.start - 59 * MINUTE,
                                 self.start - 50 * MINUTE)
        self.add_records(yesterday, [(f"Y{i:03d}", "APPROVED") for i in range(10)])
        self._card_attempt_1 = self.add_run(CARD_AUTH, self.business_date, "RUN", self.start + 3 * MINUTE,
                                            None)
        # Today's run is half-way: ten payments approved, five waiting for the card network.
        self.add_records(self._card_attempt_1, [(f"M{i:03d}", "APPROVED") for i in range(10)]
                         + [(f"M{i:03d}", "AUTHORIZING") for i in range(10, 15)])
        self.write_log(self.settlement_log,
                       [LogLine("INFO", f"settled merchant batch {i}") for i in range(5)])
        self.write_log(self.card_log, [LogLine("INFO", f"authorized M{i:03d}") for i in range(10)])
        self.write_log(self.ledger_log, [LogLine("INFO", "ledger export done rows=1200")])
        self.fill_sdk_log_to(SDK_LIMIT_BYTES // 4)
        self.config_path.write_text(self.config_text(), encoding="utf-8")
        return self.config_path

    # --- what the batches do ------------------------------------------------------------------------

    def add_run(self, job: str, business_date: str, status: str, start: datetime,
                end: datetime | None) -> int:
        with self._db() as db:
            cursor = db.execute(
                "INSERT INTO batch_run (job, biz_date, status, start_time, end_time) VALUES (?, ?, ?, ?, ?)",
                (job, business_date, status, _text(start), _text(end)),
            )
            return int(cursor.lastrowid or 0)

    def add_records(self, run_id: int, rows: list[tuple[str, str]]) -> None:
        with self._db() as db:
            db.executemany(
                "INSERT INTO auth_request (run_id, merchant_ref, state) VALUES (?, ?, ?)",
                [(run_id, ref, state) for ref, state in rows],
            )

    def write_log(self, path: Path, lines: list[LogLine]) -> None:
        """Append lines in one write, in the `date time LEVEL text` shape of the batches' logs."""
        stamp = _utc_now().strftime(TIMESTAMP_FORMAT)
        with path.open("a", encoding="utf-8", newline="\n") as log:
            log.write("".join(f"{stamp} {line.level} {line.text}\n" for line in lines))

    def fill_sdk_log_to(self, size: int) -> int:
        """Append SDK progress lines in one write until the SDK log holds at least `size` bytes."""
        current = self.sdk_log.stat().st_size if self.sdk_log.exists() else 0
        chunk: list[str] = []
        number = 0
        while current < size:
            line = f"[INFO] upload block {number:05d} sent, 64 records acknowledged\r\n"
            chunk.append(line)
            current += len(line.encode("utf-8"))
            number += 1
        with self.sdk_log.open("a", encoding="utf-8", newline="") as log:
            log.write("".join(chunk))
        return current

    def card_authorization_dies(self) -> None:
        """Today's card-authorization run abends: five rows stay AUTHORIZING, nothing rolls back."""
        with self._db() as db:
            db.execute("UPDATE batch_run SET status = 'ABEND', end_time = ? WHERE run_id = ?",
                       (_text(_utc_now()), self._card_attempt_1))

    def card_authorization_logs_errors(self) -> None:
        """What the dying run left in its application log."""
        self.write_log(self.card_log, [
            LogLine("ERROR", "card network connection reset while authorizing M010"),
            LogLine("ERROR", "java.net.SocketException: Connection reset"),
            LogLine("FATAL", "aborting run: 5 requests left AUTHORIZING"),
        ])

    def card_authorization_rerun_blindly(self) -> None:
        """Someone re-runs today's card-authorization without reading the log: the whole file is
        authorized again (eight payments approved twice) and the re-run abends as well."""
        now = _utc_now()
        rerun = self.add_run(CARD_AUTH, self.business_date, "ABEND", now - MINUTE, now)
        self.add_records(rerun, [(f"M{i:03d}", "APPROVED") for i in range(8)]
                         + [(f"M{i:03d}", "AUTHORIZING") for i in range(8, 15)])

    def sdk_log_overflows(self) -> int:
        """The vendor SDK writes past its 4 KiB limit; returns the new size."""
        return self.fill_sdk_log_to(SDK_LIMIT_BYTES + 512)

    def ledger_rerun_runs_long(self) -> None:
        """ledger-export is re-run for today (it is idempotent); the re-run takes 11 minutes, over
        its 10-minute maximum, and logs an error while it runs: a success its log contradicts."""
        self.write_log(self.ledger_log, [
            LogLine("ERROR", "ledger row 4711 rejected by the general ledger, retried"),
            LogLine("INFO", "ledger export done rows=1200"),
        ])
        now = _utc_now()  # the run ends after its lines are written, as a real run's would
        self.add_run(LEDGER, self.business_date, "OK", now - 11 * MINUTE - timedelta(seconds=30), now)

    def settlement_keeps_working(self) -> None:
        """The healthy batch's log keeps growing with ordinary lines."""
        self.write_log(self.settlement_log, [LogLine("INFO", "settlement report sent, 0 differences")])

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """One committed transaction; the exporter reads the same file read-only meanwhile."""
        connection = sqlite3.connect(self.db_path, timeout=10)
        try:
            with connection:
                yield connection
        finally:
            connection.close()
