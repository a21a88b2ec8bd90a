"""A real Apache Airflow metadata database on PostgreSQL, with run history made by Airflow's own commands.

`provision(version)` gives an `AirflowEnv`: a cached virtualenv with the pinned Airflow release
(~/.cache/batch-exporter/airflow-<version>, installed with pip on first use), a fresh PostgreSQL database
migrated by `airflow db migrate`, and the DAGs of tests/airflow_dags. Nothing is written into Airflow's
tables by hand: runs are made by `airflow dags trigger` and executed by a real `airflow scheduler`
(LocalExecutor; in 3.x with an `airflow api-server --apps execution` for the tasks to report to), and
re-runs by `airflow tasks clear`. `airflow dags test` is not used: it deletes and re-creates the run of
a logical date each time (so clear_number starts again from 0) and records the logical date as the
run's start_date.

Scenarios are generators that yield when they need the scheduler to finish runs (`WaitFor`) or need it
stopped (`Quiet`, for runs that must stay queued after a clear). `AirflowEnv.play` interleaves several
of them on one database, so their waits overlap; `build_all` plays the standard set. Each returns a
`Scenario`: the DAG, the runs with their expected end state and clear_number, and the commands run.

Logical dates are fixed (from `ANCHOR`); the start, end and queue times are Airflow's own, from the
real clock. Nightly runs are keyed by their logical date at 17:00 UTC (02:00 the next day in Tokyo).

Speed: an `airflow` process spends about two seconds importing Airflow, so `AirflowEnv.cli` runs CLI
commands through one long-lived interpreter that calls Airflow's own entry point
(`airflow.__main__.main`) once per command, exactly as the `airflow` script does. `AirflowEnv.run`
starts a fresh `airflow` process instead.
"""
from __future__ import annotations

import contextlib
import csv
import fcntl
import functools
import io
import json
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Concatenate, ParamSpec

HERE = Path(__file__).resolve().parent
DAGS_SOURCE = HERE / "airflow_dags"
PINNED = {"3": "3.3.2", "2": "2.11.2"}
CACHE_ROOT = Path(os.environ.get("BATCH_EXPORTER_CACHE", str(Path.home() / ".cache" / "batch-exporter")))
PG_HOST = os.environ.get("BATCH_EXPORTER_AIRFLOW_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("BATCH_EXPORTER_AIRFLOW_PG_PORT", "5432"))
PG_USER = os.environ.get("BATCH_EXPORTER_AIRFLOW_PG_USER", "postgres")

NIGHTLY = "nightly_auth"
EVERY_15 = "every_15_minutes"
# The fixed instant all logical dates derive from; every one of them lies after the DAGs' start_date.
ANCHOR = datetime(2026, 11, 20, tzinfo=UTC)
NIGHTLY_SLOT = timedelta(hours=17)  # 02:00 Asia/Tokyo, the nightly schedule, in UTC
FINISHED = frozenset({"success", "failed"})
NULL = "\\N"  # how psql_rows asks psql to write NULL, told apart from an empty string

_RUNNER = r'''
import contextlib, io, json, os, sys, traceback

replies = os.fdopen(int(sys.argv[1]), "w", buffering=1)
from airflow.__main__ import main

replies.write(json.dumps({"ready": True}) + "\n")
for line in sys.stdin:
    argv = json.loads(line)
    out = io.StringIO()
    rc, error = 0, ""
    sys.argv = ["airflow", *argv]
    try:
        with contextlib.redirect_stdout(out):
            main()
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        error = "" if exc.code is None or isinstance(exc.code, int) else str(exc.code)
    except BaseException:
        rc, error = 1, traceback.format_exc()
    sys.stdout.flush()
    replies.write(json.dumps({"rc": rc, "stdout": out.getvalue(), "error": error}) + "\n")
'''


class AirflowError(RuntimeError):
    """An Airflow command failed, or Airflow did not reach the expected state in time."""


class AirflowUnavailable(RuntimeError):
    """PostgreSQL (or psql) is not there: the tests that need Airflow cannot run on this machine."""


# ---------------------------------------------------------------------------------------------------------
# The virtualenv


def pinned_version(version: str) -> str:
    """The exact release for "3", "2" or an exact version string."""
    return PINNED.get(version, version)


def _reports_version(venv: Path, version: str) -> bool:
    try:
        result = subprocess.run([str(venv / "bin" / "airflow"), "version"], capture_output=True, text=True,
                                timeout=120, env=_clean_environ({"AIRFLOW_HOME": str(venv / "airflow-home")}))
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and result.stdout.strip().splitlines()[-1:] == [version]


def airflow_venv(version: str, cache_root: Path = CACHE_ROOT, *, reinstall: bool = False) -> Path:
    """The virtualenv with `apache-airflow[postgres]==version`, installed first if missing (or if `reinstall`).

    A marker file is written only after a successful install whose `airflow version` prints the pinned
    version; a file lock keeps two processes from installing at the same time. A venv with the marker is
    trusted here; `provision` runs `airflow version` in it first thing and reinstalls once if it is broken.
    """
    version = pinned_version(version)
    venv = cache_root / f"airflow-{version}"
    marker = venv / ".batch-exporter-installed"
    cache_root.mkdir(parents=True, exist_ok=True)
    with open(cache_root / f"airflow-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not reinstall and marker.is_file() and (venv / "bin" / "airflow").is_file():
            return venv
        marker.unlink(missing_ok=True)
        shutil.rmtree(venv, ignore_errors=True)
        python = os.environ.get("BATCH_EXPORTER_AIRFLOW_PYTHON") or shutil.which("python3") or "python3"
        log = cache_root / f"airflow-{version}.install.log"
        with open(log, "w") as out:
            for command in ([python, "-m", "venv", str(venv)],
                            [str(venv / "bin" / "pip"), "install", f"apache-airflow[postgres]=={version}"]):
                out.write(f"$ {' '.join(command)}\n")
                out.flush()
                if subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=1800).returncode != 0:
                    raise AirflowError(f"installing Airflow {version} failed, see {log}")
        if not _reports_version(venv, version):
            raise AirflowError(f"{venv}/bin/airflow version does not print {version} after the install, see {log}")
        marker.write_text(f"apache-airflow[postgres]=={version}\n")
    return venv


def _clean_environ(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without any Airflow setting that could leak in, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(extra)
    return env


# ---------------------------------------------------------------------------------------------------------
# PostgreSQL


def _psql(database: str, sql: str, *, csv: bool = False, timeout: float = 60) -> str:
    command = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", PG_HOST, "-p", str(PG_PORT), "-U", PG_USER,
               "-d", database]
    if csv:
        command += ["--csv", "-P", f"null={NULL}"]
    try:
        result = subprocess.run([*command, "-c", sql], capture_output=True, text=True, timeout=timeout,
                                env={**os.environ, "PGTZ": "UTC", "PGCONNECT_TIMEOUT": "5"})
    except FileNotFoundError as exc:
        raise AirflowUnavailable("psql is not installed (apt-get install postgresql-client)") from exc
    if result.returncode != 0:
        raise AirflowError(f"psql -d {database}: {result.stderr.strip()}\n{sql}")
    return result.stdout


def postgres_missing() -> str | None:
    """Why no database can be made on the test PostgreSQL server, else None."""
    try:
        _psql("postgres", "SELECT 1")
    except (AirflowUnavailable, AirflowError) as exc:
        return f"PostgreSQL at {PG_HOST}:{PG_PORT} (user {PG_USER}) is not usable: {exc}"
    return None


def _rows(csv_text: str) -> list[dict[str, str | None]]:
    return [{k: (None if v == NULL else v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(csv_text))]


# ---------------------------------------------------------------------------------------------------------
# Scenario results and steps


@dataclass(frozen=True)
class ExpectedRun:
    """One dag_run row as the scenario leaves it."""

    run_id: str
    logical_date: datetime | None  # None: a manual run without one (3.x)
    state: str
    clear_number: int


@dataclass
class Scenario:
    """What a scenario did: its DAG, the runs it made with their end state, and the commands, in order."""

    name: str
    dag_id: str
    runs: list[ExpectedRun] = field(default_factory=list)
    commands: list[tuple[str, ...]] = field(default_factory=list)

    def run(self, run_id: str) -> ExpectedRun:
        return next(r for r in self.runs if r.run_id == run_id)


@dataclass(frozen=True)
class WaitFor:
    """Yielded by a scenario: resume me when these runs of `dag_id` are finished (success or failed)."""

    dag_id: str
    run_ids: tuple[str, ...]


@dataclass(frozen=True)
class Quiet:
    """Yielded by a scenario: resume me when the scheduler is stopped (so what I clear stays queued)."""


Step = WaitFor | Quiet
ScenarioGen = Generator[Step, None, Scenario]
P = ParamSpec("P")


# ---------------------------------------------------------------------------------------------------------
# The environment


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class AirflowEnv:
    """One Airflow installation against its own fresh PostgreSQL database. Close it to drop the database."""

    def __init__(self, version: str, venv: Path, home: Path, database: str) -> None:
        self.version = version
        self.major = int(version.split(".")[0])
        self.venv = venv
        self.home = home
        self.database = database
        self.dags_folder = home / "dags"
        self.flags = home / "flags"
        self.sqlalchemy_url = f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"
        self.timings: dict[str, float] = {}
        self._api_port = _free_port()
        self.env = _clean_environ({
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.sqlalchemy_url,
            "AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS": "False",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            # Unpaused from the start, as in production; no run is made from the schedule (below).
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__EXECUTE_TASKS_NEW_PYTHON_INTERPRETER": "False",
            # The scheduler runs queued runs (triggered or cleared) but never makes runs from a DAG's
            # schedule, whose slots would follow the wall clock.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
            "AIRFLOW__SCHEDULER__PARSING_PROCESSES": "1",
            "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "600",
            "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "600",
            "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
            "SCARF_ANALYTICS": "false",
            "DO_NOT_TRACK": "true",
            # 3.x: tasks report to the execution API; scheduler and api-server share the token secret.
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self._api_port}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            # The scheduler starts with the api-server, not after it: a task that finds the API not up yet
            # retries soon rather than after Airflow's default 1, 3, 7, 15 s back-off.
            "AIRFLOW__WORKERS__EXECUTION_API_RETRIES": "60",
            "AIRFLOW__WORKERS__EXECUTION_API_RETRY_WAIT_MIN": "0.2",
            "AIRFLOW__WORKERS__EXECUTION_API_RETRY_WAIT_MAX": "0.5",
            # 3.x: a task's supervisor polls at this interval (default 5 s) and lingers that long after the task
            # ended, which the scheduler's shutdown waits for.
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
            "AIRFLOW_WORLD_FLAGS": str(self.flags),
            "PYTHONWARNINGS": "ignore",
        })
        self.commands: list[tuple[str, ...]] = []  # every CLI command run, in order
        self.events: list[tuple[float, str]] = []  # (seconds since creation, what), for timing reports
        self._born = time.monotonic()
        self._runner: subprocess.Popen[str] | None = None
        self._replies: IO[str] | None = None
        self._runner_ready = False
        self._api_server: subprocess.Popen[bytes] | None = None
        self._scheduler: subprocess.Popen[bytes] | None = None
        self._paused_by_us: set[str] = set()

    # --- commands -------------------------------------------------------------------------------------

    def run(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """`airflow *args` as a fresh process (about two seconds of imports each)."""
        started = time.monotonic()
        result = subprocess.run([str(self.venv / "bin" / "airflow"), *args], capture_output=True, text=True,
                                env=self.env, cwd=self.home, timeout=timeout)
        self._note(args, started)
        if check and result.returncode != 0:
            raise AirflowError(f"airflow {' '.join(args)} exited {result.returncode}\n{result.stdout[-3000:]}"
                               f"\n{result.stderr[-5000:]}")
        return result

    def cli(self, *args: str, timeout: float = 300) -> str:
        """`airflow *args` in the long-lived CLI interpreter; its standard output. Raises on failure."""
        started = time.monotonic()
        runner, replies = self._cli_runner()
        assert runner.stdin is not None
        runner.stdin.write(json.dumps(list(args)) + "\n")
        runner.stdin.flush()
        reply = self._reply(replies, runner, timeout, f"airflow {' '.join(args)}")
        self._note(args, started)
        if reply["rc"] != 0:
            raise AirflowError(f"airflow {' '.join(args)} exited {reply['rc']}: {reply['error']}\n"
                               f"{reply['stdout'][-3000:]}\nsee {self.home / 'cli.log'}")
        stdout: str = reply["stdout"]
        return stdout

    def _note(self, args: tuple[str, ...], started: float) -> None:
        self.commands.append(("airflow", *args))
        key = " ".join(args[:2])
        self.timings[key] = self.timings.get(key, 0.0) + time.monotonic() - started
        self.event(f"done: airflow {' '.join(args)}")

    def event(self, what: str) -> None:
        self.events.append((round(time.monotonic() - self._born, 2), what))

    def _cli_runner(self) -> tuple[subprocess.Popen[str], IO[str]]:
        self.start_cli_runner()
        assert self._runner is not None and self._replies is not None
        if not self._runner_ready:
            self._reply(self._replies, self._runner, 120, "starting the CLI interpreter")
            self._runner_ready = True
        return self._runner, self._replies

    def start_cli_runner(self) -> None:
        """Start the CLI interpreter (it imports Airflow meanwhile); `cli` waits for it to be ready."""
        if self._runner is not None:
            return
        script = self.home / "cli_runner.py"
        script.write_text(_RUNNER)
        read_end, write_end = os.pipe()
        log = open(self.home / "cli.log", "ab")  # noqa: SIM115 - handed to the child, closed with it
        try:
            self._runner = subprocess.Popen(
                [str(self.venv / "bin" / "python"), str(script), str(write_end)], stdin=subprocess.PIPE,
                stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.home, text=True,
                pass_fds=(write_end,), start_new_session=True)
        finally:
            os.close(write_end)
            log.close()
        self._replies = os.fdopen(read_end, "r")

    def _reply(self, replies: IO[str], runner: subprocess.Popen[str], timeout: float, what: str) -> dict[str, Any]:
        ready, _, _ = select.select([replies], [], [], timeout)
        line = replies.readline() if ready else ""
        if not line:
            raise AirflowError(f"{what}: no answer from the CLI interpreter (exit {runner.poll()}); "
                               f"see {self.home / 'cli.log'}:\n{_tail(self.home / 'cli.log')}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def psql_rows(self, sql: str) -> list[dict[str, str | None]]:
        """The rows of a query on this database, as psql prints them (text; NULL is None; times in UTC)."""
        return _rows(_psql(self.database, sql, csv=True))

    def psql(self, sql: str) -> str:
        """psql's own table output of `sql` (for reports)."""
        return _psql(self.database, sql)

    # --- run outcomes and commands the scenarios use ----------------------------------------------------

    def set_outcome(self, dag_id: str, key: str, *, fail: bool) -> None:
        """Make the next execution of the run `key` (its run_id) of `dag_id` fail or succeed (nightly_auth)."""
        flag = self.flags / dag_id / key
        if fail:
            flag.parent.mkdir(parents=True, exist_ok=True)
            flag.write_text("fail\n")
        else:
            flag.unlink(missing_ok=True)

    def trigger(self, dag_id: str, logical_date: datetime | None, *, fail: bool = False) -> tuple[str, datetime | None]:
        """`airflow dags trigger`; for a logical date the run_id is manual__<ISO date> (2.x's own default), else
        Airflow picks both. Returns the run_id and the logical date Airflow recorded."""
        if logical_date is None and fail:
            raise ValueError("a run without a logical date cannot be told to fail before it is queued")
        args = ["dags", "trigger", dag_id, "-o", "json"]
        if logical_date is not None:
            run_id = f"manual__{logical_date.isoformat()}"
            args += ["-l" if self.major >= 3 else "-e", logical_date.isoformat(), "-r", run_id]
            self.set_outcome(dag_id, run_id, fail=fail)
        out = self.cli(*args)
        created = _trigger_output(out)
        run_id = str(created["dag_run_id"])
        recorded = created.get("logical_date", created.get("execution_date"))
        return run_id, (datetime.fromisoformat(str(recorded)) if recorded else None)

    def clear(self, dag_id: str, logical_date: datetime, *, only_failed: bool = False) -> None:
        """`airflow tasks clear dag_id -s date -e date -y [--only-failed]`."""
        when = logical_date.isoformat()
        self.cli("tasks", "clear", dag_id, "-s", when, "-e", when, "-y", *(["--only-failed"] if only_failed else []))

    # --- scheduler ----------------------------------------------------------------------------------------

    def start_api_server(self) -> None:
        """3.x: the execution API the scheduler's task processes report to (started early: it takes seconds)."""
        if self.major < 3 or self._api_server is not None:
            return
        self._api_server = self._spawn("api-server.log", "api-server", "--apps", "execution", "-H", "127.0.0.1",
                                       "-p", str(self._api_port), "-w", "1")

    def _check_alive(self, waiting_for: object) -> None:
        if self._scheduler is None or self._scheduler.poll() is not None:
            raise AirflowError(f"the scheduler is not running; waiting for {waiting_for}:\n"
                               f"{_tail(self.home / 'scheduler.log')}")
        if self._api_server is not None and self._api_server.poll() is not None:
            raise AirflowError(f"the api-server stopped; waiting for {waiting_for}:\n"
                               f"{_tail(self.home / 'api-server.log')}")

    def _spawn(self, log_name: str, *args: str) -> subprocess.Popen[bytes]:
        with open(self.home / log_name, "ab") as log:
            return subprocess.Popen([str(self.venv / "bin" / "airflow"), *args], stdout=log, stderr=subprocess.STDOUT,
                                    env=self.env, cwd=self.home, start_new_session=True)

    def start_scheduler(self, running: Iterable[tuple[str, str]] = ()) -> None:
        """Start `airflow scheduler` to execute the queued runs `running` ((dag_id, run_id) pairs).

        Any other queued run must stay queued: its DAG is paused while the scheduler runs (and unpaused
        when it stops); a DAG with runs of both kinds cannot be served.
        """
        if self._scheduler is not None:
            return
        wanted = set(running)
        queued = {(r["dag_id"] or "", r["run_id"] or "") for r in self.psql_rows(
            "SELECT dag_id, run_id FROM dag_run WHERE state IN ('queued', 'running')")}
        keep = queued - wanted
        clash = {d for d, _ in keep} & {d for d, _ in wanted}
        if clash:
            raise AirflowError(f"cannot run {sorted(wanted)}: the scheduler would also run {sorted(keep)}, "
                               "which must stay queued; play scenarios that leave runs queued last")
        unpaused = {r["dag_id"] for r in self.psql_rows("SELECT dag_id FROM dag WHERE NOT is_paused")}
        for dag_id in sorted({d for d, _ in keep} & {d for d in unpaused if d}):
            self.cli("dags", "pause", dag_id)
            self._paused_by_us.add(dag_id)
        self._scheduler = self._spawn("scheduler.log", "scheduler", "--skip-serve-logs")
        self.event("scheduler started")

    def stop_scheduler(self) -> None:
        """Stop the scheduler (SIGTERM, then SIGKILL to its process group) and unpause what it paused."""
        if self._scheduler is not None:
            started = time.monotonic()
            _stop(self._scheduler, 60)
            self._scheduler = None
            self.timings["scheduler stop"] = self.timings.get("scheduler stop", 0.0) + time.monotonic() - started
            self.event("scheduler stopped")
        for dag_id in sorted(self._paused_by_us):
            self.cli("dags", "unpause", dag_id)
        self._paused_by_us.clear()

    def wait_for_runs(self, runs: Iterable[tuple[str, str]], timeout: float = 180) -> None:
        """Wait until the scheduler has finished all of `runs` ((dag_id, run_id) pairs)."""
        pending = set(runs)
        deadline = time.monotonic() + timeout
        while pending:
            pending -= self.finished(pending)
            if not pending:
                return
            self._check_alive(sorted(pending))
            if time.monotonic() > deadline:
                raise AirflowError(f"runs not finished after {timeout}s: {sorted(pending)}\n"
                                   f"{_tail(self.home / 'scheduler.log')}")
            time.sleep(0.25)

    def finished(self, runs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of `runs` are finished (success or failed)."""
        runs = set(runs)
        if not runs:
            return set()
        keys = ", ".join(f"('{d}', '{r}')" for d, r in sorted(runs))
        rows = self.psql_rows(f"SELECT dag_id, run_id, state FROM dag_run WHERE (dag_id, run_id) IN ({keys})")
        return {(r["dag_id"] or "", r["run_id"] or "") for r in rows if r["state"] in FINISHED}

    # --- scenarios ------------------------------------------------------------------------------------------

    def play(self, *scenarios: ScenarioGen) -> list[Scenario]:
        """Run scenarios together on this database: all of them advance until they wait; the scheduler runs
        while any waits for runs, and is stopped for those that need it quiet (and at the end)."""
        results: dict[int, Scenario] = {}
        blocked: dict[int, Step] = {}

        def advance(index: int) -> None:
            try:
                blocked[index] = scenarios[index].send(None)
            except StopIteration as done:
                blocked.pop(index, None)
                results[index] = done.value

        for index in range(len(scenarios)):
            advance(index)
        try:
            while blocked:
                waits = {i: s for i, s in blocked.items() if isinstance(s, WaitFor)}
                if waits:
                    wanted = {(s.dag_id, r) for s in waits.values() for r in s.run_ids}
                    paused = {s.dag_id for s in waits.values()} & self._paused_by_us
                    if paused:
                        raise AirflowError(f"{sorted(paused)} paused to keep runs queued; cannot run {sorted(wanted)}")
                    self.start_scheduler(wanted)
                    self._wait_any(waits)
                    self.event("runs finished")
                    for index, step in waits.items():
                        if self._done(step):
                            advance(index)
                else:
                    self.stop_scheduler()
                    for index in list(blocked):
                        advance(index)
        finally:
            self.stop_scheduler()
        return [results[i] for i in range(len(scenarios))]

    def _done(self, step: WaitFor) -> bool:
        runs = {(step.dag_id, r) for r in step.run_ids}
        return self.finished(runs) == runs

    def _wait_any(self, waits: dict[int, WaitFor], timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if any(self._done(step) for step in waits.values()):
                return
            if time.monotonic() > deadline:
                raise AirflowError(f"no scenario's runs finished after {timeout}s: {list(waits.values())}\n"
                                   f"{_tail(self.home / 'scheduler.log')}")
            self._check_alive(list(waits.values()))
            time.sleep(0.25)

    # --- teardown -------------------------------------------------------------------------------------------

    def close(self, *, keep_database: bool = False) -> None:
        """Stop every process this environment started, drop the database and remove AIRFLOW_HOME."""
        with contextlib.suppress(AirflowError):
            self.stop_scheduler()
        if self._scheduler is not None:
            _stop(self._scheduler, 30)
        if self._runner is not None:
            if self._runner.stdin is not None:
                with contextlib.suppress(OSError):
                    self._runner.stdin.close()
            _stop(self._runner, 10)
            self._runner = None
        if self._replies is not None:
            self._replies.close()
            self._replies = None
        if self._api_server is not None:
            _stop(self._api_server, 30)
            self._api_server = None
        if not keep_database:
            _psql("postgres", f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> AirflowEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stop(process: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM to a process this module started (in its own session), then SIGKILL to that session's group."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # leftovers: LocalExecutor workers, api-server workers
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)


def _tail(path: Path, size: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return f"({path} unreadable)"


def _trigger_output(out: str) -> dict[str, Any]:
    for line in reversed(out.splitlines()):
        if line.startswith("[{"):
            created: list[dict[str, Any]] = json.loads(line)
            return created[0]
    raise AirflowError(f"no JSON in the output of dags trigger:\n{out}")


def provision(version: str = "3", *, cache_root: Path = CACHE_ROOT, base: Path | None = None,
              scheduler: bool = True) -> AirflowEnv:
    """A ready Airflow `version` ("3", "2" or exact) on a fresh database `airflow<major>_<hex>`: migrated
    (`airflow db migrate`), its DAGs in the database (`airflow dags reserialize`), unpaused, no runs yet.

    With `scheduler`, the scheduler is started at once (it takes seconds to get going): any run queued from
    then on is executed until `play` stops it."""
    reason = postgres_missing()
    if reason:
        raise AirflowUnavailable(reason)
    version = pinned_version(version)
    started = time.monotonic()
    for reinstall in (False, True):
        venv = airflow_venv(version, cache_root, reinstall=reinstall)
        env = _new_env(version, venv, base)
        env.timings["venv"] = time.monotonic() - started
        try:
            printed = env.cli("version").strip().splitlines()[-1:]
        except AirflowError:
            printed = []
        if printed == [version]:
            break
        env.close()
    else:
        raise AirflowError(f"{venv}: `airflow version` does not print {version}, even after a reinstall")
    try:
        env.cli("db", "migrate")
        env.start_api_server()  # 3.x; it checks the schema when it starts
        env.cli("dags", "reserialize")
        if scheduler:
            env.start_scheduler()
    except BaseException:
        env.close()
        raise
    env.timings["provision"] = time.monotonic() - started
    env.event("provisioned")
    return env


def _new_env(version: str, venv: Path, base: Path | None) -> AirflowEnv:
    """An AirflowEnv on a new empty database, its CLI interpreter starting."""
    database = f"airflow{version.split('.')[0]}_{secrets.token_hex(6)}"
    home = (Path(base) if base is not None else Path(os.environ.get("TMPDIR", "/tmp"))) / f"airflow-world-{database}"
    home.mkdir(parents=True)
    shutil.copytree(DAGS_SOURCE, home / "dags", ignore=shutil.ignore_patterns("__pycache__"))
    env = AirflowEnv(version, venv, home, database)
    env.start_cli_runner()  # it imports Airflow meanwhile
    try:
        _psql("postgres", f'CREATE DATABASE "{database}"')
    except BaseException:
        env.close(keep_database=True)
        shutil.rmtree(home, ignore_errors=True)
        raise
    return env


def provision_or_skip(version: str) -> AirflowEnv:
    """`provision` for a test module's fixture: skipped, saying why, where PostgreSQL cannot be used."""
    import pytest

    reason = postgres_missing()
    if reason:
        pytest.skip(reason)
    try:
        return provision(version)
    except AirflowUnavailable as exc:
        pytest.skip(str(exc))


@contextlib.contextmanager
def airflow_env(version: str = "3") -> Iterator[AirflowEnv]:
    """`provision` as a context manager that drops the database afterwards."""
    env = provision(version)
    try:
        yield env
    finally:
        env.close()


# ---------------------------------------------------------------------------------------------------------
# Scenarios (generators for AirflowEnv.play)


def _recording(scenario: Callable[Concatenate[AirflowEnv, P], ScenarioGen]
               ) -> Callable[Concatenate[AirflowEnv, P], ScenarioGen]:
    """Fill in the Scenario's commands: those the env ran while this scenario's generator was running (other
    scenarios run theirs only while this one is suspended at a yield)."""

    @functools.wraps(scenario)
    def recorded(env: AirflowEnv, *args: P.args, **kwargs: P.kwargs) -> ScenarioGen:
        inner = scenario(env, *args, **kwargs)
        commands: list[tuple[str, ...]] = []
        while True:
            mark = len(env.commands)
            try:
                step = next(inner)
            except StopIteration as done:
                result: Scenario = done.value
                result.commands = commands + env.commands[mark:]
                return result
            commands += env.commands[mark:]
            yield step

    return recorded


def pg_timestamp(moment: datetime) -> str:
    """A timestamptz as psql_rows gives it (PGTZ=UTC), to compare with what Airflow wrote."""
    return moment.strftime("%Y-%m-%d %H:%M:%S+00")


def nightly_date(day: int) -> datetime:
    """The logical date of nightly_auth's slot `day` days after ANCHOR: 17:00 UTC, 02:00 the next day in Tokyo."""
    return ANCHOR + timedelta(days=day) + NIGHTLY_SLOT


# The standard scenarios' nightly dates, one each so that they can share a database.
CLEARED_TWICE_DATE = nightly_date(0)
CLEARED_QUEUED_DATE = nightly_date(1)
CLEARED_ONLY_FAILED_DATE = nightly_date(2)
OLDER_DATE = nightly_date(3)
NEWER_DATE = nightly_date(4)


@_recording
def cleared_twice(env: AirflowEnv, logical_date: datetime = CLEARED_TWICE_DATE) -> ScenarioGen:
    """nightly_auth for one logical date: fails (settle), cleared and fails again, cleared and succeeds.
    Ends as one dag_run row: success, clear_number 2."""
    run_id, _ = env.trigger(NIGHTLY, logical_date, fail=True)
    yield WaitFor(NIGHTLY, (run_id,))
    env.clear(NIGHTLY, logical_date)
    yield WaitFor(NIGHTLY, (run_id,))
    env.set_outcome(NIGHTLY, run_id, fail=False)
    env.clear(NIGHTLY, logical_date)
    yield WaitFor(NIGHTLY, (run_id,))
    return Scenario("cleared twice", NIGHTLY, [ExpectedRun(run_id, logical_date, "success", 2)])


@_recording
def cleared_and_queued(env: AirflowEnv, logical_date: datetime = CLEARED_QUEUED_DATE,
                       only_failed_date: datetime = CLEARED_ONLY_FAILED_DATE) -> ScenarioGen:
    """nightly_auth: two runs fail; then, with no scheduler running, one is cleared with `tasks clear` and the
    other with `tasks clear --only-failed`. Both are left queued with clear_number 1."""
    plain, _ = env.trigger(NIGHTLY, logical_date, fail=True)
    only_failed, _ = env.trigger(NIGHTLY, only_failed_date, fail=True)
    yield WaitFor(NIGHTLY, (plain, only_failed))
    yield Quiet()
    env.clear(NIGHTLY, logical_date)
    env.clear(NIGHTLY, only_failed_date, only_failed=True)
    return Scenario("cleared and queued", NIGHTLY,
                    [ExpectedRun(plain, logical_date, "queued", 1),
                     ExpectedRun(only_failed, only_failed_date, "queued", 1)])


@_recording
def every_15_minutes(env: AirflowEnv, first_slot: datetime = ANCHOR, count: int = 8, more: int = 3) -> ScenarioGen:
    """every_15_minutes for `count` consecutive slots from `first_slot` (00:00 ... 01:45 UTC), all successful,
    then `more` slots after them."""
    runs: list[ExpectedRun] = []
    for batch in (range(count), range(count, count + more)):
        made = [(env.trigger(EVERY_15, first_slot + timedelta(minutes=15 * i))[0],
                 first_slot + timedelta(minutes=15 * i)) for i in batch]
        if made:
            yield WaitFor(EVERY_15, tuple(run_id for run_id, _ in made))
        runs += [ExpectedRun(run_id, when, "success", 0) for run_id, when in made]
    return Scenario("15-minute DAG", EVERY_15, runs)


@_recording
def old_date_cleared(env: AirflowEnv, older: datetime = OLDER_DATE,
                     newer: datetime = NEWER_DATE) -> ScenarioGen:
    """nightly_auth: two dates succeed; then, with no scheduler running, the older one is cleared (left queued)."""
    old_run, _ = env.trigger(NIGHTLY, older)
    new_run, _ = env.trigger(NIGHTLY, newer)
    yield WaitFor(NIGHTLY, (old_run, new_run))
    yield Quiet()
    env.clear(NIGHTLY, older)
    return Scenario("old date cleared", NIGHTLY,
                    [ExpectedRun(old_run, older, "queued", 1), ExpectedRun(new_run, newer, "success", 0)])


@_recording
def manual_trigger(env: AirflowEnv) -> ScenarioGen:
    """nightly_auth: `airflow dags trigger` with no logical date, run to success. In 3.x the run has no logical
    date (only run_after); in 2.x its execution_date is the moment of the trigger. Both come from the clock."""
    run_id, recorded = env.trigger(NIGHTLY, None)
    yield WaitFor(NIGHTLY, (run_id,))
    return Scenario("manual trigger", NIGHTLY, [ExpectedRun(run_id, recorded, "success", 0)])


def build_all(env: AirflowEnv) -> dict[str, Scenario]:
    """The five standard scenarios on one database (on distinct dates), by name."""
    played = env.play(cleared_twice(env), cleared_and_queued(env), every_15_minutes(env), old_date_cleared(env),
                      manual_trigger(env))
    return {scenario.name: scenario for scenario in played}
