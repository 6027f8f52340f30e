"""`python -m benchmarks NAME [--rows N]` runs one benchmark; `python -m benchmarks all` runs every one."""
from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import warnings

BENCHMARKS = {
    "pipeline_e2e": "benchmarks.pipeline_e2e",
    "small_run": "benchmarks.small_run",
    "featurize_vs_mllib": "benchmarks.featurize_vs_mllib",
    "reader_vs_pyarrow": "benchmarks.reader_vs_pyarrow",
    "train_vs_keras": "benchmarks.train_vs_keras",
    "allreduce_latency": "benchmarks.allreduce_latency",
    "auc_vs_bayes": "benchmarks.auc_vs_bayes",
    "infer_vs_predict": "benchmarks.infer_vs_predict",
    "real_tabular": "benchmarks.real_tabular",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("name", choices=[*BENCHMARKS, "all"], help="which benchmark to run")
    parser.add_argument("--rows", type=int, default=None, help="data size (each benchmark has its own default)")
    parser.add_argument("--trials", type=int, default=20, help="real_tabular: dlpipe tune's trials per feature set")
    parser.add_argument("--sets", default=None, help="real_tabular: feature sets, comma-separated (default: both)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore", category=FutureWarning)  # Petastorm 0.13.1 on pyarrow 14, per file opened
    if args.name == "all":
        # One process per benchmark: each gets a fresh Spark driver and its own memory peak.
        extra = ["--rows", str(args.rows)] if args.rows else []
        failed = [n for n in BENCHMARKS if subprocess.call([sys.executable, "-m", "benchmarks", n, *extra]) != 0]
        return 1 if failed else 0
    module = importlib.import_module(BENCHMARKS[args.name])
    if args.name == "real_tabular":
        sets = tuple(args.sets.split(",")) if args.sets else tuple(module.FEATURE_SETS)
        module.main(args.rows or module.DEFAULT_ROWS, trials=args.trials, sets=sets)
    else:
        module.main(args.rows or module.DEFAULT_ROWS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
