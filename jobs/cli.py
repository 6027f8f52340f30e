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
from typing import Callable, Sequence

EXAMPLES = """\
examples:
  dlpipe run --config conf/demo.yaml                       all stages of the demo pipeline
  dlpipe train --config conf/demo.yaml --set train.epochs=5
  dlpipe tune --config conf/demo.yaml --set tune.trials=4  a hyperparameter scan, trials in parallel
  dlpipe sql "SELECT count(*) FROM predictions"            query tables by name (database from the config)
  dlpipe serve-sql --port 10000                            JDBC for beeline: jdbc:hive2://127.0.0.1:10000/dlpipe
  spark-submit jobs/train.py --config conf/demo.yaml       the same stage under spark-submit
"""

STAGE_HELP = {
    "generate": "write the synthetic HIGGS-shaped data set (generate.*) as a Delta table",
    "featurize": "split the input, fit the feature transform on the training split, write the feature table",
    "train": "train the Keras model with Horovod on Spark, streaming the feature table with Petastorm",
    "infer": "score the input with the latest model through a Spark UDF into the Delta predictions table",
    "evaluate": "join a run's predictions to the labels and write AUC, accuracy and log loss to the metrics table",
    "tune": "hyperparameter scan: train each config of tune.space on one worker per Spark task, rank them in a Delta table",
    "run": "run the stages listed under `stages` in the config, in order, with one run id",
    "sql": "run a SQL query over the pipeline's tables (metastore and warehouse under data_dir)",
    "serve-sql": "serve the pipeline's tables over JDBC (Spark Thrift server) for beeline and JDBC clients",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dlpipe",
        description="Spark deep learning pipeline: featurize, train (Horovod on Spark), infer (Spark UDF to Delta), evaluate.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in STAGE_HELP.items():
        sub = commands.add_parser(name, help=text, description=text)
        if name == "sql":
            sub.add_argument("query", help='the SQL statement, e.g. "SELECT count(*) FROM predictions"')
            sub.add_argument("--max-rows", type=int, default=50, help="print at most this many rows (default 50)")
        if name == "serve-sql":
            sub.add_argument("--port", type=int, default=None, help="TCP port (default: sql_server.port, 10000)")
        sub.add_argument(
            "--config", default="conf/demo.yaml",
            help="pipeline YAML; base.yaml and local.yaml beside it are layered under and over it (default conf/demo.yaml)",
        )
        sub.add_argument(
            "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
            help="override one config key, e.g. --set train.num_proc=2 (repeatable; values are YAML)",
        )
        if name in ("train", "infer", "evaluate", "run", "tune"):
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


def _stage_function(command: str) -> Callable:
    from pipelines import evaluate, featurize, generate, infer, run, serve_sql, sql, train, tune

    return {"generate": generate.run, "featurize": featurize.run, "train": train.run, "infer": infer.run,
            "evaluate": evaluate.run, "run": run.run, "sql": sql.run, "tune": tune.run,
            "serve-sql": serve_sql.run}[command]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from features.errors import FeatureError
    from pipelines.config import ConfigError, load_config
    from pipelines.errors import PipelineError

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

    spark = None
    try:
        from pipelines.session import build_session

        spark = build_session(cfg)
        stage = _stage_function(args.command)
        if args.command == "sql":
            stage(spark, cfg, args.query, max_rows=args.max_rows)
        elif args.command in ("infer", "run"):
            stage(spark, cfg, run_id=args.run_id, run_date=args.date)
        elif args.command in ("train", "evaluate", "tune"):
            stage(spark, cfg, run_id=args.run_id)
        else:
            stage(spark, cfg)
        return 0
    except (PipelineError, FeatureError, ConfigError) as err:
        if args.debug:
            traceback.print_exc()
        print(f"{prefix}: error: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # an unexpected failure: one line by default, the traceback with --debug
        if args.debug:
            traceback.print_exc()
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        print(f"{prefix}: failed: {type(err).__name__}: {first} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1
    finally:
        if spark is not None:
            spark.stop()


def entry(command: str) -> None:
    """What the spark-submit files in jobs/ call: ``spark-submit jobs/train.py --config conf/demo.yaml``."""
    sys.exit(main([command, *sys.argv[1:]]))


if __name__ == "__main__":
    sys.exit(main())
