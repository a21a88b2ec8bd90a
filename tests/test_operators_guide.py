"""Every command of the operator's guide (and of the Windows recipe) is exercised.

Commands are the lines of ```sh and ```powershell blocks. A command either runs here, in a sandbox
folder that mirrors the repository, and must exit 0; or it matches one rule of NOT_RUN_HERE, which
says why it cannot run on a test machine. Those still have to name files that exist and, where they
call batch-exporter, arguments its parser accepts.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from batch_exporter import __version__
from batch_exporter.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "operators-guide.md"
WINDOWS_RECIPE = REPO / "deploy" / "windows" / "README.md"
VENV_BIN = Path(sys.executable).parent

# Rules for commands that cannot run on a test machine: (pattern at the start, why).
NOT_RUN_HERE: list[tuple[str, str]] = [
    (r"sudo ", "runs as root on a service host (packages, users, /etc, systemd and its journal): this "
               "machine is not one; the files it installs are checked by tests/test_deploy.py"),
    (r"curl ", "asks an installed service at its address; tests/test_deploy.py probes a real exporter"),
    (r"docker ", "needs Docker and a registry to pull python:3.11-slim; tests/test_container.py builds the "
                 "Containerfile with podman on a stand-in base, runs it and its HEALTHCHECK"),
    (r"kubectl -n monitoring ", "needs a Kubernetes cluster; the manifests are schema-checked by tests/test_deploy.py"),
    (r"promtool check web-config /etc/", "names the installed path; the shipped web config passes "
                                         "promtool in tests/test_deploy.py"),
    (r"/opt/batch-exporter/bin/", "the installed venv of a service host"),
    (r"\.venv/bin/python alerts/generate\.py$",
     "rewrites files of the checkout; the --check form runs here, and tests/test_alert_pack.py compares "
     "the files with what the generator renders"),
    (r"batch-exporter (drill|rerun-check) ", "drills start a demo Prometheus/Alertmanager stack and wait for "
                                             "alerts; they are tested by the drill's own tests"),
]
WINDOWS_ONLY = "PowerShell on Windows (services, icacls, firewall)"

# subcommands the guide describes that are built elsewhere; until the parser has them their
# arguments cannot be checked here
PENDING_SUBCOMMANDS = {"drill", "rerun-check"}

# A runnable command reads the guide's example files from the sandbox's docs/examples, where these
# installed paths are replaced by sandbox files.
SQLITE_EXAMPLE_DB = "/var/lib/batch/runs.db"

_REPO_PATH = re.compile(r"(?<![\w/.\\-])((?:deploy|docs|alerts|dashboards|exporter)[/\\][\w./\\*-]*\w|Containerfile)")


@dataclass(frozen=True)
class Command:
    doc: Path
    line: int
    lang: str
    text: str

    def __str__(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}: {self.text}"


def fenced_blocks(path: Path) -> list[tuple[str, int, str]]:
    """(language, line of the first content line, text) of every fenced block."""
    blocks: list[tuple[str, int, str]] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        match = re.match(r"^```(\w*)\s*$", lines[index])
        if match:
            end = index + 1
            while not lines[end].startswith("```"):
                end += 1
            blocks.append((match.group(1), index + 2, "\n".join(lines[index + 1:end])))
            index = end
        index += 1
    return blocks


def commands_of(path: Path) -> list[Command]:
    found: list[Command] = []
    for lang, first, text in fenced_blocks(path):
        if lang not in ("sh", "powershell"):
            continue
        pending, start = "", first
        for offset, raw in enumerate(text.splitlines()):
            line = raw.strip()
            if not pending:
                start = first + offset
                if not line or line.startswith("#"):
                    continue
            if line.endswith("\\") and lang == "sh":
                pending += line[:-1] + " "
                continue
            found.append(Command(path, start, lang, pending + line))
            pending = ""
    return found


GUIDE_COMMANDS = commands_of(GUIDE)
WINDOWS_COMMANDS = commands_of(WINDOWS_RECIPE)


def reason_not_run(command: Command) -> str | None:
    if command.lang == "powershell":
        return WINDOWS_ONLY
    for pattern, reason in NOT_RUN_HERE:
        if re.match(pattern, command.text):
            return reason
    return None


RUNNABLE = [c for c in GUIDE_COMMANDS if reason_not_run(c) is None]
NOT_RUNNABLE = [c for c in GUIDE_COMMANDS + WINDOWS_COMMANDS if reason_not_run(c) is not None]


def test_the_documents_have_commands_of_both_kinds() -> None:
    assert len(RUNNABLE) >= 10
    assert any(c.lang == "powershell" for c in NOT_RUNNABLE)
    assert all(c.lang == "sh" for c in GUIDE_COMMANDS), "the guide's commands are in ```sh blocks"


def test_every_not_run_rule_is_used() -> None:
    used = {pattern for pattern, _ in NOT_RUN_HERE
            for c in NOT_RUNNABLE if c.lang == "sh" and re.match(pattern, c.text)}
    assert used == {pattern for pattern, _ in NOT_RUN_HERE}, "drop rules no command needs"


# --- the sandbox: the repository as seen from its root, with example paths made local ---------------

def _make_runs_db(path: Path, today: date) -> None:
    """The SQLite run table exactly as the guide creates it, plus three runs of the example batch.

    The commands run as real processes on the real clock, so the runs are placed a few days before
    `today`: inside the example's lookback, and in the past in every time zone at every hour.
    """
    def day(days_ago: int) -> str:
        return (today - timedelta(days=days_ago)).isoformat()

    ddl = _sql_block_under("### SQLite")
    with sqlite3.connect(path) as conn:
        conn.executescript(ddl)
        conn.executemany(
            "INSERT INTO batch_run (job_name, biz_date, status, start_time, end_time) VALUES (?, ?, ?, ?, ?)",
            [("nightly-export", day(4), "NG", f"{day(3)} 01:30:02", f"{day(3)} 01:41:10"),
             ("nightly-export", day(4), "OK", f"{day(3)} 07:02:44", f"{day(3)} 07:30:19"),
             ("nightly-export", day(3), "OK", f"{day(2)} 01:30:04", f"{day(2)} 01:58:47")])


def _sql_block_under(heading: str) -> str:
    text = GUIDE.read_text(encoding="utf-8")
    section = text[text.index(heading):]
    section = section[:section.index("\n#", 1)]
    match = re.search(r"```sql\n(.*?)```", section, re.S)
    assert match, f"no SQL block under {heading}"
    return match.group(1)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("guide")
    for entry in REPO.iterdir():
        if entry.name not in ("docs", ".git"):
            (root / entry.name).symlink_to(entry)
    (root / "docs").mkdir()
    for entry in (REPO / "docs").iterdir():
        if entry.name != "examples":
            (root / "docs" / entry.name).symlink_to(entry)
    shutil.copytree(REPO / "docs" / "examples", root / "docs" / "examples")
    sqlite_example = root / "docs" / "examples" / "sqlite.yml"
    text = sqlite_example.read_text(encoding="utf-8")
    assert SQLITE_EXAMPLE_DB in text
    sqlite_example.write_text(text.replace(SQLITE_EXAMPLE_DB, str(root / "runs.db")), encoding="utf-8")
    _make_runs_db(root / "runs.db", datetime.now(UTC).date())
    return root


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("command", RUNNABLE, ids=lambda c: f"line{c.line}")
def test_runnable_command_succeeds(command: Command, sandbox: Path) -> None:
    program = next(w for w in shlex.split(command.text) if not re.match(r"\w+=", w))
    if shutil.which(program, path=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}") is None \
            and not (sandbox / program).exists():
        pytest.skip(f"{program} is not installed here")
    result = _run(command.text, sandbox)
    assert result.returncode == 0, f"{command}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    if program == "batch-exporter" and " once " in command.text:
        assert 'batch_run_last_status{batch="nightly-export",status="success"} 1.0' in result.stdout
        assert 'batch_run_attempts{batch="nightly-export"} 1.0' in result.stdout
    if program == "batch-exporter" and " check-config " in command.text:
        assert ": OK (" in result.stdout


@pytest.mark.clock
def test_the_guide_example_reads_one_healthy_attempt_on_any_day(sandbox: Path) -> None:
    (command,) = [c for c in RUNNABLE if c.text.startswith("batch-exporter once ")]
    result = _run(command.text, sandbox)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'batch_run_last_status{batch="nightly-export",status="success"} 1.0' in result.stdout
    assert 'batch_run_attempts{batch="nightly-export"} 1.0' in result.stdout


def test_schema_command_writes_json_schema(sandbox: Path) -> None:
    import json
    command = next(c for c in RUNNABLE if " schema" in f" {c.text}")
    assert _run(command.text, sandbox).returncode == 0
    target = command.text.split(">")[-1].strip()
    schema = json.loads((sandbox / target).read_text())
    assert schema["title"] == "batch-exporter configuration"


# --- commands that cannot run here: their files exist, their batch-exporter arguments parse --------

@pytest.mark.parametrize("command", NOT_RUNNABLE, ids=lambda c: f"{c.doc.stem}-line{c.line}")
def test_not_runnable_command_names_existing_files(command: Command) -> None:
    for found in _REPO_PATH.findall(command.text):
        relative = found.replace("\\", "/")
        assert list(REPO.glob(relative)), f"{command}\nnames {found}, which is not in the repository"


def _cli_arguments(command: Command) -> list[list[str]]:
    """Argument lists following each batch-exporter executable in a command."""
    words = shlex.split(command.text.replace("\\", "/"), posix=True) if command.lang == "sh" else \
        shlex.split(command.text.replace("\\", "/").replace("& ", ""), posix=True)
    found: list[list[str]] = []
    first = next((i for i, w in enumerate(words) if not re.match(r"\w+=", w)), None)
    for index, word in enumerate(words):
        # the executable: a bare name leading the command, or an installed path (not a user or service name)
        if (word == "batch-exporter" and index == first) or re.search(r"/(bin|Scripts)/batch-exporter(\.exe)?$", word):
            args: list[str] = []
            for arg in words[index + 1:]:
                if arg in (";", "|", "&&", ">", "2>&1") or arg.startswith(">"):
                    break
                args.append(arg)
            found.append(args)
    return found


CLI_COMMANDS = [c for c in GUIDE_COMMANDS + WINDOWS_COMMANDS if _cli_arguments(c)]


@pytest.mark.parametrize("command", CLI_COMMANDS, ids=lambda c: f"{c.doc.stem}-line{c.line}")
def test_batch_exporter_arguments_parse(command: Command) -> None:
    parser = build_parser()
    for args in _cli_arguments(command):
        try:
            parser.parse_args(args)
        except SystemExit as exc:  # --version exits 0 after printing; a rejected argument exits 2
            if exc.code != 0:
                raise AssertionError(f"{command}\nbatch-exporter rejects {args}") from exc


def test_version_in_commands_is_the_package_version() -> None:
    for command in GUIDE_COMMANDS:
        for version in re.findall(r"batch-exporter:(\d+\.\d+\.\d+)", command.text):
            assert version == __version__, str(command)


# --- the prose around the commands -----------------------------------------------------------------

def test_relative_links_resolve() -> None:
    for doc in (GUIDE, WINDOWS_RECIPE):
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8")):
            assert (doc.parent / target).exists(), f"{doc.relative_to(REPO)} links to missing {target}"


def test_yaml_excerpts_are_copied_from_the_example_files() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    excerpts = re.findall(r"<!-- excerpt: (\S+) -->\n```yaml\n(.*?)```", text, re.S)
    assert len(excerpts) == 4
    for path, block in excerpts:
        assert block in (REPO / path).read_text(encoding="utf-8"), f"the guide's excerpt of {path} has drifted"


def test_every_database_has_a_worked_example_and_grants() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    for heading, example in (("### SQL Server", "sqlserver"), ("### PostgreSQL", "postgresql"),
                             ("### MariaDB", "mariadb"), ("### SQLite", "sqlite")):
        assert heading in text
        assert f"docs/examples/{example}.yml" in text
        assert (REPO / "docs" / "examples" / f"{example}.yml").exists()
    grants = text[text.index("## 3. A read-only database account"):text.index("## 4.")]
    for statement in ("GRANT SELECT ON dbo.batch_run", "GRANT SELECT ON batch.batch_run",
                      "GRANT SELECT ON payments.batch_run", "default_transaction_read_only"):
        assert statement in grants


def test_guide_links_the_other_engineers_files() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    for target in ("deploy/prometheus/prometheus.yml", "dashboards/", "alerts/alertmanager.yml",
                   "deploy/windows/README.md", "deploy/kubernetes/", "deploy/systemd/"):
        assert f"(../{target})" in text, f"the guide does not link {target}"
