"""The ``dlpipe`` command line: one subcommand per pipeline stage, plus ``run`` (all stages) and ``sql``.

Every subcommand loads and validates the config before any Spark work, builds the one Spark session, calls one
pipeline function, and on failure prints a one-line cause and exits non-zero (1 for a failed stage, 2 for bad
arguments or config).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import traceback
from typing import Sequence

EXAMPLES = """\
examples:
  dlpipe run --config conf/demo.yaml                       all stages of the demo pipeline
  dlpipe init --input /data/flights.parquet --label delayed --output conf/flights.yaml
                                                           a starting config for your own table
  dlpipe train --config conf/demo.yaml --set train.epochs=5
  dlpipe tune --config conf/demo.yaml --set tune.trials=4  a hyperparameter scan, trials in parallel
  dlpipe sql "SELECT count(*) FROM predictions"            query tables by name (database from the config)
  dlpipe serve-sql --port 10000                            JDBC for beeline: jdbc:hive2://127.0.0.1:10000/dlpipe
  dlpipe run --config conf/demo.yaml --date 2026-11-27     a scheduled run: stages unchanged since are skipped
  dlpipe runs                                              recent runs, one line per stage
  dlpipe lineage predictions                               what produced a table or model, and from what
  dlpipe models promote higgs_mlp v3 --alias production    point an alias at a version (infer.model_version: production)
  dlpipe report 20261127T140000Z                           the HTML report of a run
  spark-submit jobs/train.py --config conf/demo.yaml       the same stage under spark-submit
"""

# The commands besides one per pipeline stage (those come from the stage registry, pipelines.stage).
COMMAND_HELP = {
    "init": "profile a table in Spark and write a starting pipeline config for it, each choice explained",
    "tune": "hyperparameter scan: train each config of tune.space on one worker per Spark task, rank them in a Delta table",
    "run": "run the stages listed under `stages` in the config, in order, with one run id",
    "sql": "run a SQL query over the pipeline's tables (metastore and warehouse under data_dir)",
    "serve-sql": "serve the pipeline's tables over JDBC (Spark Thrift server) for beeline and JDBC clients",
    "runs": "list recent runs from the runs table: one line per stage with status, time, rows and key metric",
    "lineage": "show what produced a table or model (stage, run, inputs with versions), back to the raw input",
    "report": "write a run's self-contained HTML report: config, features, training curves, ROC, scores, timings",
    "models": "list trained model versions with their run, training data, validation metrics and aliases; "
              "`models promote NAME VERSION --alias ALIAS` moves an alias",
}

# The commands that only read (or append a row to) dlpipe's own small tables: their driver starts quicker
# (pipelines.session.QUICK_START_OPTIONS).
SMALL_READS = ("runs", "lineage", "models")


def stage_help() -> dict[str, str]:
    from dlpipe.pipelines.stage import registry

    return {name: stage.help for name, stage in registry().items()}


def tracked() -> tuple[str, ...]:
    """The commands recorded in the runs table and logged to a file: every stage, and ``run``."""
    return (*stage_help(), "run")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dlpipe",
        description="Spark deep learning pipeline: featurize, train (Horovod on Spark), infer (Spark UDF to Delta), evaluate.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in {**stage_help(), **COMMAND_HELP}.items():
        sub = commands.add_parser(name, help=text, description=text)
        if name == "sql":
            sub.add_argument("query", help='the SQL statement, e.g. "SELECT count(*) FROM predictions"')
            sub.add_argument("--max-rows", type=int, default=50, help="print at most this many rows (default 50)")
            sub.add_argument("--output", default=None, metavar="FILE",
                             help="save every row to FILE (.csv with a header, or .parquet) instead of printing")
        if name == "init":
            sub.add_argument("--input", required=True, metavar="PATH|TABLE",
                             help="a table in the config's database, or a path to Parquet or Delta files")
            sub.add_argument("--label", required=True, metavar="COLUMN", help="the binary label column")
            sub.add_argument("--key", default=None, metavar="COLUMN",
                             help="the column that names each row (default: found by profiling, if any)")
            sub.add_argument("--output", required=True, metavar="FILE.yaml", help="the config to write (never overwritten)")
        if name == "serve-sql":
            sub.add_argument("--port", type=int, default=None, help="TCP port (default: sql_server.port, 10000)")
        if name in ("sql", "serve-sql"):
            sub.add_argument("--writable", action="store_true",
                             help="allow SQL that writes (default: read-only: DROP, INSERT, CREATE and the like, and "
                                  "reading files by path, are refused); for administrators")
        if name == "run":
            sub.add_argument("--stages", default=None, metavar="A,B",
                             help="run only these stages, e.g. --stages infer,evaluate (default: `stages` in the config)")
            sub.add_argument("--force", action="store_true",
                             help="redo every stage, even unchanged ones, and allow a run id used with another config")
        if name == "runs":
            sub.add_argument("--limit", type=int, default=20, help="show the stages of this many recent runs (default 20)")
            sub.add_argument("--run-id", default=None, help="only this run, with its inputs and outputs")
        if name == "lineage":
            sub.add_argument("name", help="a table (e.g. predictions) or a model name (e.g. higgs_mlp)")
            sub.add_argument("--version", default=None, help="a model version (v3) or Delta table version (default: latest)")
        if name == "models":
            sub.add_argument("words", nargs="*", metavar="[promote] NAME [VERSION]",
                             help="a model name to list its versions (default: every model); promote NAME VERSION "
                                  "with --alias points the alias at that version")
            sub.add_argument("--alias", default=None, help="promote: the alias to move, e.g. production")
        if name == "report":
            sub.add_argument("run_id", metavar="RUN_ID", help="the run to report on (see `dlpipe runs`)")
            sub.add_argument("--output", default=None, help="the HTML file (default: <data_dir>/runs/<run id>/report.html)")
        sub.add_argument(
            "--config", default="conf/demo.yaml",
            help="pipeline YAML; base.yaml and local.yaml beside it are layered under and over it (default conf/demo.yaml)",
        )
        sub.add_argument(
            "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
            help="override one config key, e.g. --set train.num_proc=2 (repeatable; values are YAML)",
        )
        if name in (*tracked(), "tune"):
            sub.add_argument("--run-id", default=None, help="run id (default: a new UTC timestamp; evaluate: the latest "
                                                             "run; train: an unfinished run id resumes from its checkpoint;"
                                                             " tune: the scan id, a rerun replaces its results)")
        if name in ("infer", "run"):
            sub.add_argument("--date", type=logical_date, default=None, metavar="YYYY-MM-DD",
                             help="the run's logical date: the predictions' run_date partition (default: today, UTC)")
        sub.add_argument("--debug", action="store_true", help="print the full traceback on failure")
    return parser


def logical_date(text: str) -> dt.date:
    """``--date``: a calendar date written YYYY-MM-DD (what schedulers pass, e.g. Airflow's ``{{ ds }}``)."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: use YYYY-MM-DD, e.g. 2026-11-27") from None


def _command(spark, cfg, args: argparse.Namespace, run_id: str | None) -> None:
    from dlpipe.pipelines import init_config, lineage, registry, report, run, serve_sql, sql, tune
    from dlpipe.pipelines.stage import stage

    command = args.command
    if command == "run":
        run.run(spark, cfg, run_id=run_id, run_date=args.date, stages=_stage_names(args.stages), force=args.force)
    elif command in tracked():
        named = stage(command).run_id_names  # what --run-id names besides the stage's own run, if anything
        run.run_stage(spark, cfg, command, run_id, run_date=getattr(args, "date", None),
                      handoff={named: args.run_id} if named and args.run_id else None)
    elif command == "tune":
        tune.run(spark, cfg, run_id=args.run_id)
    elif command == "init":
        init_config.run(spark, cfg, args.input, args.label, args.key, args.output)
    elif command == "sql":
        sql.run(spark, cfg, args.query, max_rows=args.max_rows, output=args.output)
    elif command == "serve-sql":
        serve_sql.run(spark, cfg, writable=args.writable)
    elif command == "runs":
        lineage.list_runs(spark, cfg, limit=args.limit, run_id=args.run_id)
    elif command == "lineage":
        lineage.show(spark, cfg, args.name, version=args.version)
    elif command == "report":
        report.write(spark, cfg, args.run_id, output=args.output)
    elif command == "models":
        registry.command(spark, cfg, args.words, args.alias)


def _stage_names(text: str | None) -> list[str] | None:
    return [n.strip() for n in text.split(",") if n.strip()] if text else None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    os.umask(0o077)  # what a job writes (data folder, logs, models) is its owner's alone, whatever the shell's umask
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stdout.reconfigure(line_buffering=True)  # progress lines reach a pipe, a log file or a scheduler at once

    from dlpipe.pipelines import termination
    from dlpipe.pipelines.config import ConfigError, load_config
    from dlpipe.pipelines.errors import PipelineError
    from dlpipe.pipelines.runlog import TeeOutput

    prefix = f"dlpipe {args.command}"
    try:
        overrides = list(args.overrides)
        if getattr(args, "port", None) is not None:
            overrides.append(f"sql_server.port={args.port}")
        cfg = load_config(args.config, overrides)
        cfg.check_stage(args.command)
    except ConfigError as err:
        print(f"{prefix}: config error: {err}", file=sys.stderr)
        return 2
    from dlpipe.pipelines.run_id import check_run_id, new_run_id, run_folder, selected_stages

    try:
        if args.command == "run":
            selected_stages(cfg, _stage_names(args.stages))
        run_id = None
        if args.command in tracked():
            run_id = check_run_id(args.run_id) if args.run_id else new_run_id()  # evaluate: the run it evaluates
        if getattr(args, "run_id", None):
            check_run_id(args.run_id)
    except PipelineError as err:
        print(f"{prefix}: {err}", file=sys.stderr)
        return 2
    if run_id is None:
        return _main(args, cfg, prefix, None)
    termination.install()  # a scheduler's kill: the stage is recorded as failed, then exit 143
    with TeeOutput(run_folder(cfg, run_id) / "run.log"):
        return _main(args, cfg, prefix, run_id)


def _main(args: argparse.Namespace, cfg, prefix: str, run_id: str | None) -> int:
    from dlpipe.pipelines import termination

    spark = None
    try:
        from dlpipe.pipelines.session import build_session

        if args.command == "serve-sql":
            from dlpipe.pipelines import serve_sql, unprivileged

            serve_sql.prepare(cfg)  # before Spark starts: where it will listen, and who may log in
            unprivileged.drop_root(cfg, args.argv)  # started as root: serve as sql_server.run_as
        spark = build_session(cfg, read_only=args.command in ("sql", "serve-sql") and not args.writable,
                              serving=args.command == "serve-sql", small_reads=args.command in SMALL_READS)
        _command(spark, cfg, args, run_id)
        termination.check()
        return 0
    except Exception as err:
        if args.debug:
            traceback.print_exc()
        print(f"{prefix}: {_failure(err, run_id)}", file=sys.stderr)
        return termination.EXIT_CODE if termination.requested() else 1
    finally:
        if spark is not None:
            spark.stop()


def _failure(err: Exception, run_id: str | None) -> str:
    """One line for a failed command: the user's error as it is, a SIGTERM, a Spark job that failed on the data in
    the data's terms; anything unexpected by its type and first line (the traceback with --debug)."""
    from dlpipe.features.errors import FeatureError
    from dlpipe.pipelines import termination
    from dlpipe.pipelines.config import ConfigError
    from dlpipe.pipelines.errors import PipelineError, spark_failure

    if termination.requested():
        return termination.MESSAGE + (f" (run {run_id}: the same command resumes it)" if run_id else "")
    if isinstance(err, (PipelineError, FeatureError, ConfigError)):
        return f"error: {err}"
    known = spark_failure(err)
    if known:
        return f"error: {known}"
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"failed: {type(err).__name__}: {first} (rerun with --debug for the traceback)"


def entry(command: str) -> None:
    """What the spark-submit files in jobs/ call: ``spark-submit jobs/train.py --config conf/demo.yaml``."""
    sys.exit(main([command, *sys.argv[1:]]))


if __name__ == "__main__":
    sys.exit(main())
