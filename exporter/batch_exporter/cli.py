"""Command line: run, once, check-config, schema, rerun-check, healthcheck, and the practice tools
(demo, drill). The composition root: it may import the core and practice/, and nothing imports it."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

from . import __version__
from .app import log_state_dir, open_databases, override_fleet_shards
from .config import Config, ConfigError, json_schema, load_config
from .database import QueryError
from .explain import explain
from .masking import MaskingFilter
from .practice.flags import add_demo_stack_arguments, add_drill_arguments
from .rerun import command as rerun_command
from .rerun.bounded import BoundedDatabase
from .service import ExporterService, serve
from .shards import SHARD_HINT, Shard, parse_shard
from .sources.fleet import probe_fleet_columns
from .sources.run_columns import MissingColumns
from .sources.run_table import Query, ResolvedColumns, probe_columns
from .state_dir import StateDirError, inspect
from .web import DEFAULT_PORT
from .webconfig import WebConfig, WebConfigError, load_web_config

log = logging.getLogger("batch_exporter")

LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}


def _add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config.file", dest="config", required=True, type=Path,
                        help="configuration file (YAML)")


def _add_serving_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--web.listen-address", dest="listen", default=f":{DEFAULT_PORT}",
                        help=f"address to serve on (default :{DEFAULT_PORT})")
    parser.add_argument("--web.config.file", dest="web_config", type=Path, default=None,
                        help="exporter-toolkit web config: TLS and basic auth")


def _shard(text: str) -> Shard:
    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_shard_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shard", type=_shard, default=None, metavar="I/N",
                        help=f"take shard I of N of every fleet, instead of each fleet's own `shard` ({SHARD_HINT})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batch-exporter", description="Prometheus exporter for batch jobs.",
                                     allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"batch-exporter {__version__}")
    parser.add_argument("--log.level", dest="log_level", choices=sorted(LOG_LEVELS), default="info")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", allow_abbrev=False, help="serve /metrics for a configuration")
    _add_config_flag(run)
    _add_serving_flags(run)
    _add_shard_flag(run)

    once = commands.add_parser("once", allow_abbrev=False, help="poll every source once and print the exposition")
    _add_config_flag(once)
    _add_shard_flag(once)

    check = commands.add_parser("check-config", allow_abbrev=False, help="validate a configuration file")
    _add_config_flag(check)
    check.add_argument("--explain", nargs="?", const="", default=None, metavar="BATCH",
                       help="print the SQL sent for each batch (or only BATCH), presets' included; no database "
                            "is contacted")

    commands.add_parser("schema", allow_abbrev=False, help="print the JSON Schema of the configuration")

    rerun = commands.add_parser("rerun-check", allow_abbrev=False,
                                help="before re-running a batch: gather the evidence and give a verdict")
    rerun_command.add_arguments(rerun)

    demo = commands.add_parser("demo", allow_abbrev=False, help="serve the embedded SQLite card-authorization demo")
    demo.add_argument("--dir", type=Path, default=None, help="folder for the demo data (default: a temp folder)")
    demo.add_argument("--interval", type=float, default=None, help="seconds between simulated nightly runs")
    _add_serving_flags(demo)
    add_demo_stack_arguments(demo)

    health = commands.add_parser("healthcheck", allow_abbrev=False,
                                 help="exit 0 when the exporter serving beside this process answers /-/healthy")
    health.add_argument("--web.listen-address", dest="listen", default=None,
                        help="where to ask (default: the serving exporter's own --web.listen-address)")

    drill = commands.add_parser("drill", allow_abbrev=False,
                                help="practise a failure on the demo batch: inject it, time its alerts, restore")
    add_drill_arguments(drill)
    return parser


def _load(path: Path) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"configuration error:\n{exc}", file=sys.stderr)
        return None


def _load_web(path: Path | None) -> tuple[bool, WebConfig | None]:
    if path is None:
        return True, None
    try:
        return True, load_web_config(path)
    except WebConfigError as exc:
        print(f"web configuration error: {exc}", file=sys.stderr)
        return False, None


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return 1
    if args.explain is not None:
        if args.explain and args.explain not in config.batches:
            print(f"check-config --explain: no batch {args.explain!r} in {args.config} (batches: "
                  f"{', '.join(config.batches)})", file=sys.stderr)
            return 1
        print(explain(config, args.explain or None), end="")
        return 0
    missing = _probe_run_tables(config)
    if missing:
        print("configuration error:\n" + "\n".join(missing), file=sys.stderr)
        return 1
    try:
        chosen = log_state_dir(config)
    except StateDirError as exc:
        print(f"configuration error:\n{exc}", file=sys.stderr)
        return 1
    fleets = f", {len(config.fleets)} fleets" if config.fleets else ""
    print(f"{args.config}: OK ({len(config.batches)} batches{fleets}, {len(config.databases)} databases)")
    print("log read positions: " + (inspect(chosen) if chosen else "none kept (no batch reads a log)"))
    return 0


def _probe_run_tables(config: Config) -> list[str]:
    """Which mapped columns each run table or query really returns (zero-row probes): located errors for
    missing ones; a note, on stdout, for a table with no business date, and for a database that cannot be
    reached now (its columns are then checked when the exporter starts)."""
    errors: list[str] = []
    databases = open_databases(config)
    # every probe through a deadline of the command's own; a database is closed on the thread that used
    # it, and one stuck in a call past its deadline is left to the process's exit (closing it would block)
    bounded: dict[str, BoundedDatabase] = {}

    def probe(kind: str, name: str, database: str, columns: Callable[[Query], ResolvedColumns]) -> None:
        db_config = config.databases[database]
        if database not in bounded:
            bounded[database] = BoundedDatabase(databases[database], db_config.connect_timeout,
                                                db_config.query_timeout)
        try:
            resolved = columns(bounded[database].query)
        except MissingColumns as exc:
            errors.append(f"{config.locate((kind, name, 'runs', 'columns', exc.missing[0][0]))}: {exc}")
            return
        except QueryError as exc:
            print(f"{name}: the run table's columns could not be checked now: {exc}")
            return
        if resolved.business_date_note is not None:
            print(f"{name}: {resolved.business_date_note}")

    try:
        for name, batch in config.batches.items():
            if batch.runs is not None and batch.database is not None:
                probe("batches", name, batch.database, partial(probe_columns, batch.runs))
        for name, fleet in config.fleets.items():
            probe("fleets", name, fleet.database, partial(probe_fleet_columns, fleet.runs))
    finally:
        for database_name, database in databases.items():
            if database_name in bounded:
                bounded[database_name].close()
            else:
                database.close()
    return errors


def cmd_schema(_: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2))
    return 0


def _take_shard(config: Config, shard: Shard | None) -> None:
    """`--shard`: every fleet's shard, in this configuration and those a reload reads."""
    if shard is not None and not config.fleets:
        log.warning("--shard %s: the configuration has no fleet to split; every batch is exported", shard)
    override_fleet_shards(shard)


def cmd_once(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return 1
    _take_shard(config, args.shard)
    service = ExporterService(config, keep_log_state=False)  # a look: from the files' start, nothing saved
    try:
        ok = service.poll_once()
        sys.stdout.buffer.write(service.metrics_payload()[0])
        sys.stdout.flush()
    finally:
        service.stop()
    return 0 if ok else 1


def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args.config)
    ok, web_config = _load_web(args.web_config)
    if config is None or not ok:
        return 1
    _take_shard(config, args.shard)
    return serve(config, args.config, args.listen, web_config, web_config_path=args.web_config)


def cmd_demo(args: argparse.Namespace) -> int:
    if args.stack:
        from .practice.demo_stack import run_demo_stack

        return run_demo_stack(args)
    from .practice.demo import serve_demo

    ok, web_config = _load_web(args.web_config)
    if not ok:
        return 1
    return serve_demo(args.dir, interval=args.interval, listen=args.listen, web_config=web_config)


def cmd_healthcheck(args: argparse.Namespace) -> int:
    from .healthcheck import run

    return run(args.listen)


def cmd_drill(args: argparse.Namespace) -> int:
    from .practice.drill import run_drill

    return run_drill(args)


COMMANDS = {
    "run": cmd_run,
    "once": cmd_once,
    "check-config": cmd_check_config,
    "schema": cmd_schema,
    "demo": cmd_demo,
    "rerun-check": rerun_command.run,
    "drill": cmd_drill,
    "healthcheck": cmd_healthcheck,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=LOG_LEVELS[args.log_level], stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(MaskingFilter())  # a card number in a driver's error text never reaches the log
    # the scheduler logs every job it runs at info: keep that for --log.level debug
    level = LOG_LEVELS[args.log_level]
    logging.getLogger("apscheduler").setLevel(level if level == logging.DEBUG else max(level, logging.WARNING))
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
