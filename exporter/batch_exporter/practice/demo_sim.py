"""The demo's card-authorization "nights": how one unfolds, and a thread that plays one every few minutes.

A night is a list of timed steps (start the run, load the day's request file, authorize it chunk by
chunk, finish; then the settlement report). `create_demo` plays thirty past nights at once to build
the history; `DemoSimulator` plays new ones in real time so the exported numbers move. Both write
through `DemoWriter`, the only writer of the demo database and logs.
"""
from __future__ import annotations

import heapq
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

log = logging.getLogger(__name__)

TOKYO = ZoneInfo("Asia/Tokyo")
AUTH_JOB = "card-authorization"
SETTLEMENT_JOB = "settlement-report"
# The vendor SDK stops writing, without a word, once its log reaches this size (the 4 GiB incident,
# shrunk so the demo reaches it within about an hour). demo.yml's size_limit for the log says the same.
SDK_LOG_CAP_BYTES = 64 * 1024
# Within a simulated night: authorization takes 30-60 % of it, the settlement report starts at 2/3
# (minute 2 of a 3-minute night, which is what demo.yml's settlement cron expects).
AUTH_SHARE = (0.30, 0.60)
SETTLEMENT_AT = 2 / 3
SETTLEMENT_SHARE = (0.05, 0.10)
STEPS = 5
APP_LINE = "{stamp} {level:<5} [{thread}] {message}"


class RunStatus(StrEnum):
    """The codes the demo's job scheduler stores in job_execution.exec_status."""

    RUNNING = "R"
    COMPLETED = "C"
    FAILED = "E"  # ended with an error and an exit code of its own
    ABENDED = "A"  # the process died; the scheduler closed the run


# Issuer test numbers only (the published 4111..., 5555..., 3530..., 3782... test cards), stored masked.
TEST_CARDS = ("4111111111111111", "5555555555554444", "3530111333300000", "378282246310005")


@dataclass(frozen=True)
class DemoPaths:
    """Where the demo keeps its files, all inside one folder."""

    folder: Path

    @property
    def database(self) -> Path:
        return self.folder / "payments.db"

    @property
    def logs(self) -> Path:
        return self.folder / "logs"

    @property
    def sdk_log(self) -> Path:
        return self.logs / "sdk" / "auth-sdk.log"

    @property
    def settlement_log(self) -> Path:
        return self.logs / "settlement-report.log"

    @property
    def state(self) -> Path:
        return self.folder / "state"

    @property
    def config(self) -> Path:
        return self.folder / "demo.yml"

    def app_log(self, day: date) -> Path:
        """The authorization batch's log for one local (Asia/Tokyo) day."""
        return self.logs / f"auth-batch-{day:%Y%m%d}.log"


def local_text(at: float) -> str:
    """Epoch seconds as the run table stores them: naive Asia/Tokyo text."""
    return datetime.fromtimestamp(at, TOKYO).strftime("%Y-%m-%d %H:%M:%S")


# The simulated batch stores card numbers the way payment systems do (first six and last four, the
# most PCI DSS allows to be displayed). This is the user's data, not the exporter's display
# masking (masking.mask_digits, which shows only the last four), so it does not use that module.
def mask_pan(pan: str) -> str:
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]


@dataclass(frozen=True)
class Request:
    merchant_ref: str
    card_token: str
    masked_pan: str
    amount_yen: int


def request_file(biz_date: date) -> list[Request]:
    """The day's authorization requests; the same every time the date is (re-)run."""
    rng = random.Random(f"auth-file:{biz_date.isoformat()}")
    return [
        Request(
            merchant_ref=f"M{biz_date:%Y%m%d}-{i:04d}",
            card_token=f"tok_{rng.getrandbits(64):016x}",
            masked_pan=mask_pan(rng.choice(TEST_CARDS)),
            amount_yen=rng.randint(30, 15000) * 10,
        )
        for i in range(1, rng.randint(40, 70) + 1)
    ]


class DemoWriter:
    """Writes the demo database and logs; each call is one short transaction (or joins an open one)."""

    def __init__(self, paths: DemoPaths, conn: sqlite3.Connection, sdk_cap: int = SDK_LOG_CAP_BYTES) -> None:
        self.paths = paths
        self.conn = conn
        self.sdk_cap = sdk_cap
        self._last_line = 0.0  # log lines never go back in time, even when several steps share a second

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        if self.conn.in_transaction:  # history generation wraps everything in one transaction
            yield self.conn
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.rollback()
            raise
        self.conn.commit()

    def start_run(self, job: str, biz_date: date, at: float) -> int:
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO job_execution (job_name, biz_date, exec_status, start_ts, host_name)"
                " VALUES (?, ?, ?, ?, 'batch01')",
                (job, biz_date.isoformat(), RunStatus.RUNNING, local_text(at)),
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    def end_run(self, exec_id: int, status: RunStatus, at: float, exit_code: int) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE job_execution SET exec_status = ?, end_ts = ?, exit_code = ? WHERE exec_id = ?",
                (status, local_text(at), exit_code, exec_id),
            )

    def load_requests(self, exec_id: int, requests: list[Request], at: float) -> list[int]:
        with self.transaction() as conn:
            conn.executemany(
                "INSERT INTO auth_request (exec_id, merchant_ref, card_token, masked_pan, amount_yen,"
                " auth_state, updated_ts) VALUES (?, ?, ?, ?, ?, 'RECEIVED', ?)",
                [(exec_id, r.merchant_ref, r.card_token, r.masked_pan, r.amount_yen, local_text(at))
                 for r in requests],
            )
            rows = conn.execute("SELECT request_id FROM auth_request WHERE exec_id = ? ORDER BY request_id",
                                (exec_id,))
            return [row[0] for row in rows]

    def set_states(self, updates: list[tuple[int, str, str | None]], at: float) -> None:
        """(request_id, auth_state, auth_code) for each row."""
        with self.transaction() as conn:
            conn.executemany(
                "UPDATE auth_request SET auth_state = ?, auth_code = ?, updated_ts = ? WHERE request_id = ?",
                [(state, code, local_text(at), request_id) for request_id, state, code in updates],
            )

    def settle(self, exec_id: int, biz_date: date, at: float) -> tuple[int, int]:
        """Total the approvals of every finished authorization run of the date; replace its settlement."""
        with self.transaction() as conn:
            count, amount = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(a.amount_yen), 0) FROM job_execution j"
                " JOIN auth_request a ON a.exec_id = j.exec_id"
                " WHERE j.job_name = ? AND j.biz_date = ? AND j.end_ts <= ? AND a.auth_state = 'APPROVED'",
                (AUTH_JOB, biz_date.isoformat(), local_text(at)),
            ).fetchone()
            conn.execute(
                "INSERT OR REPLACE INTO settlement (biz_date, exec_id, approved_count, approved_amount_yen,"
                " settled_ts) VALUES (?, ?, ?, ?, ?)",
                (biz_date.isoformat(), exec_id, count, amount, local_text(at)),
            )
            return count, amount

    def app(self, at: float, lines: list[tuple[str, str, str]]) -> None:
        """Append (level, thread, message) lines to the day's batch log, logback style."""
        _append(self.paths.app_log(datetime.fromtimestamp(at, TOKYO).date()),
                self._render(at, lines, "%Y-%m-%d %H:%M:%S", APP_LINE), "utf-8")

    def settlement(self, at: float, lines: list[tuple[str, str, str]]) -> None:
        _append(self.paths.settlement_log,
                self._render(at, lines, "%Y-%m-%d %H:%M:%S", APP_LINE), "utf-8")

    def sdk(self, at: float, lines: list[tuple[str, str]]) -> None:
        """Append (level, message) lines to the vendor SDK log (cp932, CRLF), unless it is at its cap."""
        text = self._render(at, [(level, "", message) for level, message in lines], "%Y/%m/%d %H:%M:%S",
                        "{stamp} [{level:<5}] {message}", "\r\n")
        data = text.encode("cp932")
        path = self.paths.sdk_log
        size = path.stat().st_size if path.exists() else 0
        if size + len(data) > self.sdk_cap:
            return  # what the real SDK did: stop logging, say nothing
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as handle:
            handle.write(data)

    def _render(self, at: float, lines: list[tuple[str, str, str]], fmt: str, template: str,
                newline: str = "\n") -> str:
        """Lines with millisecond timestamps; a line with an empty level is a bare continuation."""
        out = []
        for level, thread, message in lines:
            if not level:  # e.g. a stack trace frame
                out.append(message + newline)
                continue
            self._last_line = max(at, self._last_line + 0.001)
            moment = datetime.fromtimestamp(self._last_line, TOKYO)
            stamp = f"{moment.strftime(fmt)}.{moment.microsecond // 1000:03d}"
            out.append(template.format(stamp=stamp, level=level, thread=thread, message=message) + newline)
        return "".join(out)


def _append(path: Path, text: str, encoding: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding=encoding, newline="") as handle:
        handle.write(text)


Step = tuple[float, Callable[[DemoWriter], None]]


@dataclass
class AuthRun:
    """One attempt of the authorization batch for a business date.

    outcome: COMPLETED runs to the end; FAILED fails cleanly at step `fail_step` (the rest of the file is
    marked ERROR); ABENDED dies there: in-flight rows stay AUTHORIZING and unread ones RECEIVED.
    """

    biz_date: date
    attempt: int
    start: float
    duration: float
    outcome: RunStatus
    rng: random.Random
    fail_step: int = 0
    exec_id: int = 0
    request_ids: list[int] = field(default_factory=list)
    chunks: list[list[int]] = field(default_factory=list)
    approved: int = 0
    declined: int = 0

    def steps(self) -> list[Step]:
        last = self.fail_step if self.outcome in (RunStatus.FAILED, RunStatus.ABENDED) else STEPS
        out: list[Step] = [(self.start, self._begin)]
        for k in range(1, last + 1):
            out.append((self.start + self.duration * k / (STEPS + 1), partial(self._step, k=k)))
        if self.outcome == RunStatus.COMPLETED:
            out.append((self.start + self.duration, self._complete))
        return out

    def _begin(self, w: DemoWriter) -> None:
        requests = request_file(self.biz_date)
        self.exec_id = w.start_run(AUTH_JOB, self.biz_date, self.start)
        self.request_ids = w.load_requests(self.exec_id, requests, self.start)
        size = -(-len(self.request_ids) // STEPS)
        self.chunks = [self.request_ids[i:i + size] for i in range(0, len(self.request_ids), size)]
        w.app(self.start, [
            ("INFO", "main", f"{AUTH_JOB} start exec_id={self.exec_id} biz_date={self.biz_date} "
                             f"attempt={self.attempt}"),
            ("INFO", "main", f"loaded {len(requests)} requests from auth_{self.biz_date:%Y%m%d}.csv"),
            ("INFO", "main", "retry policy: gateway answers with status ERROR are retried up to 3 times"),
        ])
        w.sdk(self.start, [
            ("INFO", "SDK初期化完了 version=4.2.1 接続先=本番"),
            ("INFO", "オーソリゲートウェイに接続しました host=auth-gw.test.invalid port=443"),
            ("INFO", f"クライアント証明書の有効期限を確認しました 残り{self.rng.randint(30, 300)}日"),
        ])

    def _finish_chunk(self, w: DemoWriter, index: int, at: float) -> None:
        if not 0 <= index < len(self.chunks):
            return
        updates: list[tuple[int, str, str | None]] = []
        for request_id in self.chunks[index]:
            if self.rng.random() < 0.92:
                updates.append((request_id, "APPROVED", f"{self.rng.randint(0, 999999):06d}"))
            else:
                updates.append((request_id, "DECLINED", None))
        w.set_states(updates, at)
        approved = sum(1 for _, state, _ in updates if state == "APPROVED")
        self.approved += approved
        self.declined += len(updates) - approved
        w.sdk(at, [("INFO", f"オーソリ応答受信 承認={approved} 否認={len(updates) - approved} "
                            f"平均応答時間={self.rng.randint(150, 400)}ms")])

    def _step(self, w: DemoWriter, k: int) -> None:
        at = self.start + self.duration * k / (STEPS + 1)
        self._finish_chunk(w, k - 2, at)
        chunk = self.chunks[k - 1] if k - 1 < len(self.chunks) else []
        w.set_states([(request_id, "AUTHORIZING", None) for request_id in chunk], at)
        thread = f"auth-worker-{(k - 1) % 4 + 1}"
        done = sum(len(c) for c in self.chunks[:k - 1])
        w.app(at, [("INFO", thread, f"chunk {k}/{len(self.chunks)} sent ({len(chunk)} requests); done "
                                    f"{done}/{len(self.request_ids)} approved={self.approved} "
                                    f"declined={self.declined}")])
        w.sdk(at, [("INFO", f"オーソリ要求送信 件数={len(chunk)}"),
                   ("INFO", f"電文送信完了 バイト数={len(chunk) * 512} 暗号化=TLS1.3")])
        if self.rng.random() < 0.25:
            slow = self.rng.randint(1500, 4000)
            w.app(at, [("WARN", thread, f"slow answer from authorization gateway: {slow} ms")])
            w.sdk(at, [("WARN", f"応答遅延を検出しました {slow}ms")])
        if k == self.fail_step and self.outcome == RunStatus.FAILED:
            self._fail(w, at, chunk, thread)
        elif k == self.fail_step and self.outcome == RunStatus.ABENDED:
            self._abend(w, at, thread)

    def _fail(self, w: DemoWriter, at: float, chunk: list[int], thread: str) -> None:
        unread = [request_id for c in self.chunks[self.fail_step:] for request_id in c]
        w.sdk(at, [("ERROR", "通信エラーが発生しました: 応答タイムアウト rc=-110")])
        w.app(at, [
            ("ERROR", thread, f"gateway call failed exec_id={self.exec_id} chunk={self.fail_step}"),
            ("", "", "java.net.SocketTimeoutException: Read timed out"),
            ("", "", "\tat jp.example.cardauth.gateway.GatewayClient.authorize(GatewayClient.java:214)"),
            ("", "", "\tat jp.example.cardauth.batch.AuthorizeStep.process(AuthorizeStep.java:88)"),
            ("ERROR", "main", f"{len(chunk) + len(unread)} requests marked ERROR for re-submission"),
        ])
        w.set_states([(request_id, "ERROR", None) for request_id in chunk + unread], at)
        w.end_run(self.exec_id, RunStatus.FAILED, at, exit_code=8)
        w.app(at, [("ERROR", "main", f"{AUTH_JOB} aborted exec_id={self.exec_id} status={RunStatus.FAILED}")])

    def _abend(self, w: DemoWriter, at: float, thread: str) -> None:
        # The process dies here: no summary, no end line; the job scheduler marks the run abended.
        w.app(at, [("WARN", thread, "heap usage 94% after full GC")])
        w.sdk(at, [("FATAL", "致命的エラー: セッションが切断されました rc=-999")])
        w.end_run(self.exec_id, RunStatus.ABENDED, at, exit_code=137)

    def _complete(self, w: DemoWriter) -> None:
        at = self.start + self.duration
        self._finish_chunk(w, STEPS - 1, at)
        w.end_run(self.exec_id, RunStatus.COMPLETED, at, exit_code=0)
        w.app(at, [
            ("INFO", "main", f"summary APPROVED={self.approved} DECLINED={self.declined} ERROR=0"),
            ("INFO", "main", f"{AUTH_JOB} end exec_id={self.exec_id} status={RunStatus.COMPLETED} "
                             f"elapsed={round(self.duration)}s"),
        ])
        w.sdk(at, [("INFO", f"接続を切断しました 送信件数={len(self.request_ids)}")])


@dataclass
class SettlementRun:
    """The healthy, idempotent batch: totals a date's approvals and replaces its settlement row."""

    biz_date: date
    start: float
    duration: float
    exec_id: int = 0

    def steps(self) -> list[Step]:
        return [(self.start, self._begin), (self.start + self.duration, self._end)]

    def _begin(self, w: DemoWriter) -> None:
        self.exec_id = w.start_run(SETTLEMENT_JOB, self.biz_date, self.start)
        w.settlement(self.start, [("INFO", "main", f"{SETTLEMENT_JOB} start exec_id={self.exec_id} "
                                                   f"biz_date={self.biz_date}")])

    def _end(self, w: DemoWriter) -> None:
        at = self.start + self.duration
        count, amount = w.settle(self.exec_id, self.biz_date, at)
        w.end_run(self.exec_id, RunStatus.COMPLETED, at, exit_code=0)
        w.settlement(at, [("INFO", "main", f"settled {count} approvals, {amount} JPY"),
                          ("INFO", "main", f"{SETTLEMENT_JOB} end exec_id={self.exec_id} "
                                           f"status={RunStatus.COMPLETED}")])


def play(writer: DemoWriter, steps: list[Step]) -> None:
    """Apply steps in time order (ties keep their given order)."""
    for _, apply in sorted(steps, key=lambda step: step[0]):
        apply(writer)


def open_writer_connection(database: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(database, timeout=10, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


class DemoSimulator:
    """Plays a demo night every `interval_seconds` in a daemon thread: the demo's only database writer.

    Nights start on multiples of the interval (epoch-aligned, so 180 s nights start on minutes divisible
    by 3); the first one starts at once and is shortened to end on the next boundary. Most nights
    complete; `failure_rate` of them fail (a third of those abend), and the next night re-runs that date.
    """

    def __init__(self, paths: DemoPaths, interval_seconds: float = 180.0, *,
                 clock: Callable[[], float] = time.time, seed: int | None = None,
                 failure_rate: float = 0.1, sdk_cap: int = SDK_LOG_CAP_BYTES) -> None:
        if interval_seconds <= 0:
            raise ValueError(f"interval_seconds must be greater than 0 (got {interval_seconds})")
        self.paths = paths
        self.interval = interval_seconds
        self._clock = clock
        self._rng = random.Random(seed)
        self._failure_rate = failure_rate
        self._sdk_cap = sdk_cap
        self._writer: DemoWriter | None = None
        self._queue: list[tuple[float, int, Callable[[DemoWriter], None]]] = []
        self._seq = 0
        self._next_date: date | None = None
        self._next_attempt = 1
        self._now = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start playing nights in a daemon thread."""
        if self._thread is not None:
            raise RuntimeError("the simulator is already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="demo-simulator", daemon=True)
        self._thread.start()

    @property
    def started(self) -> bool:
        return self._thread is not None

    def stop(self) -> None:
        """Stop the thread and close the database; a run in progress stays RUNNING."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            if self._writer is not None:
                self._writer.conn.close()
                self._writer = None
            self._queue.clear()

    def tick(self, now: float) -> float:
        """Apply every step due at `now`; returns when the next one is due."""
        with self._lock:
            self._now = now
            if self._writer is None:
                conn = open_writer_connection(self.paths.database)
                self._writer = DemoWriter(self.paths, conn, self._sdk_cap)
                self._resume(now)
            while self._queue and self._queue[0][0] <= now:
                _, _, apply = heapq.heappop(self._queue)
                apply(self._writer)
            return self._queue[0][0]

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                due = self.tick(self._clock())
            except (sqlite3.Error, OSError):
                log.exception("demo simulator: write failed; retrying in 1 s")
                due = self._clock() + 1.0
            self._stop.wait(max(0.0, due - self._clock()))

    def _push(self, steps: list[Step]) -> None:
        for at, apply in steps:
            self._seq += 1
            heapq.heappush(self._queue, (at, self._seq, apply))

    def _resume(self, now: float) -> None:
        """Close runs a killed demo left running, pick the next business date, queue the first night."""
        assert self._writer is not None
        with self._writer.transaction() as conn:
            conn.execute("UPDATE job_execution SET exec_status = ?, end_ts = ?, exit_code = 137"
                         " WHERE exec_status = ?", (RunStatus.ABENDED, local_text(now), RunStatus.RUNNING))
            latest = conn.execute("SELECT biz_date, exec_status FROM job_execution WHERE job_name = ?"
                                  " ORDER BY start_ts DESC, exec_id DESC LIMIT 1", (AUTH_JOB,)).fetchone()
            attempts = 0
            if latest is not None:
                attempts = conn.execute("SELECT COUNT(*) FROM job_execution WHERE job_name = ?"
                                        " AND biz_date = ?", (AUTH_JOB, latest[0])).fetchone()[0]
        if latest is None:
            self._next_date = datetime.fromtimestamp(now, TOKYO).date() - timedelta(days=1)
        elif latest[1] in (RunStatus.FAILED, RunStatus.ABENDED) and attempts < 2:
            self._next_date, self._next_attempt = date.fromisoformat(latest[0]), attempts + 1
        else:
            self._next_date = date.fromisoformat(latest[0]) + timedelta(days=1)
        self._push(self._settlement_catch_up(now))
        self._push([(now, lambda w: self._night(now, self._boundary_after(now) - now))])

    def _settlement_catch_up(self, now: float) -> list[Step]:
        """The settlement its schedule expected last, when none has started since: the history's nights
        keep production times, so without it the first compressed night would open with a missed run.
        It settles the latest settled date again, which that idempotent batch allows."""
        assert self._writer is not None
        expected = (now - SETTLEMENT_AT * self.interval) // self.interval * self.interval \
            + SETTLEMENT_AT * self.interval
        conn = self._writer.conn
        if conn.execute("SELECT 1 FROM job_execution WHERE job_name = ? AND start_ts >= ?",
                        (SETTLEMENT_JOB, local_text(expected))).fetchone():
            return []
        latest = conn.execute("SELECT MAX(biz_date) FROM job_execution WHERE job_name = ?",
                              (SETTLEMENT_JOB,)).fetchone()[0]
        assert self._next_date is not None
        settled = date.fromisoformat(latest) if latest else self._next_date - timedelta(days=1)
        return SettlementRun(settled, now, self._rng.uniform(*SETTLEMENT_SHARE) * self.interval).steps()

    def _boundary_after(self, at: float) -> float:
        return (at // self.interval + 1) * self.interval

    def _night(self, start: float, length: float) -> None:
        assert self._next_date is not None
        if self._now >= start + length:  # the machine slept through whole nights: start afresh, aligned
            start = self._now
            length = self._boundary_after(start) - start
        outcome = RunStatus.COMPLETED
        if self._rng.random() < self._failure_rate:
            outcome = RunStatus.ABENDED if self._rng.random() < 1 / 3 else RunStatus.FAILED
        auth = AuthRun(self._next_date, self._next_attempt, start, self._rng.uniform(*AUTH_SHARE) * length,
                       outcome, random.Random(self._rng.random()), fail_step=self._rng.randint(2, STEPS))
        settlement = SettlementRun(self._next_date, start + SETTLEMENT_AT * length,
                                   self._rng.uniform(*SETTLEMENT_SHARE) * length)
        if outcome != RunStatus.COMPLETED and self._next_attempt == 1:
            self._next_attempt = 2
        else:
            self._next_date += timedelta(days=1)
            self._next_attempt = 1
        end = start + length
        self._push(auth.steps() + settlement.steps() + [(end, lambda w: self._night(end, self.interval))])

