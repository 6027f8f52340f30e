"""featurize_vs_mllib: dlpipe's featurize stage against a Spark MLlib ``Pipeline`` doing the same work.

Both read the same generated Delta table (28 numeric + 3 categorical columns), split it with the same hash, fit on
the training split only, transform all rows and write them:

- dlpipe: ``pipelines.featurize.run`` with a spec equivalent to the MLlib pipeline's work: every numeric column
  z-scored with mean imputation; detector_region one-hot (a dense float vector), run_period and trigger_id indexed
  for embeddings (MLlib one-hot encodes them as sparse vectors instead). Writes Delta partitioned by split.
  Also timed: the demo's own spec (log transforms, clipping, quantiles, missing indicators), which does more work.
- MLlib: ``Imputer`` (mean) + ``StringIndexer`` (keep invalid) + ``OneHotEncoder`` + ``VectorAssembler`` +
  ``StandardScaler`` (mean and std) fitted on the training split, then transform and write Parquet partitioned by
  split.

Spark runs as ``local-cluster[2,1,...]``: two 1-core executor JVMs apart from the driver, so the driver's memory is
measured on its own. ``driver_heap_peak_mb`` is the driver JVM's peak used heap (sampled every 0.2 s),
``driver_rss_peak_mb`` the peak resident memory of the Python driver plus the driver JVM, executors excluded.
Before timing, every contender runs once on a 100,000-row table (class loading, JIT, code generation). MLlib and
dlpipe then alternate three times and the medians are reported (``seconds_range`` gives the spread). Each size
runs in its own process; by default 1,000,000 rows and then ``--rows`` (5,000,000), to show whether the
driver's memory grows with the data. The generated input is kept in var/bench/featurize_vs_mllib/ between runs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks.measure import PeakMemory, timed

DEFAULT_ROWS = 5_000_000
SMALL_ROWS = 1_000_000
REPO = Path(__file__).resolve().parents[1]
EXECUTOR_PROCESS = "CoarseGrainedExecutorBackend"


class DriverMemory:
    """Peak heap used by the driver JVM, and peak RSS of the driver processes (the executors left out)."""

    def __init__(self, spark, interval: float = 0.2):
        self._bean = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getMemoryMXBean()
        self.interval = interval
        self.heap_peak_mb = 0.0
        self._rss = PeakMemory(interval, exclude=EXECUTOR_PROCESS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @property
    def rss_peak_mb(self) -> float:
        return self._rss.peak_mb

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.heap_peak_mb = max(self.heap_peak_mb, self._bean.getHeapMemoryUsage().getUsed() / 2**20)
            except Exception:  # the gateway may be busy shutting down
                pass
            self._stop.wait(self.interval)

    def __enter__(self) -> "DriverMemory":
        self._bean.gc()
        self._rss.__enter__()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._rss.__exit__(*exc)


def mllib_featurize(spark, cfg, output: str) -> None:
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import Imputer, OneHotEncoder, StandardScaler, StringIndexer, VectorAssembler
    from pyspark.sql import functions as F

    from dlpipe.features.split import assign_split
    from dlpipe.pipelines.tables import read_source

    fc = cfg.featurize
    spec = fc.feature_spec()
    numeric = [f.column for f in spec.numeric]
    categorical = [f.column for f in spec.categorical]
    raw = read_source(spark, cfg, fc.input)
    split = assign_split(raw, fc.key, fc.split.train, fc.split.validation, fc.split.seed)
    pipeline = Pipeline(stages=[
        Imputer(inputCols=numeric, outputCols=[f"{c}_imputed" for c in numeric], strategy="mean"),
        StringIndexer(inputCols=categorical, outputCols=[f"{c}_index" for c in categorical], handleInvalid="keep"),
        OneHotEncoder(inputCols=[f"{c}_index" for c in categorical], outputCols=[f"{c}_onehot" for c in categorical],
                      handleInvalid="keep"),
        VectorAssembler(inputCols=[f"{c}_imputed" for c in numeric], outputCol="numeric", handleInvalid="keep"),
        StandardScaler(inputCol="numeric", outputCol="numeric_scaled", withMean=True, withStd=True),
        VectorAssembler(inputCols=["numeric_scaled", *[f"{c}_onehot" for c in categorical]], outputCol="features"),
    ])
    model = pipeline.fit(split.where(F.col("split") == "train"))
    (
        model.transform(split).select(fc.key, spec.label.column, "features", "split")
        .write.mode("overwrite").partitionBy("split").parquet(output)
    )


EQUIVALENT_SPEC = [
    "featurize.numeric=[{columns: [%s]}]",
    "featurize.categorical=[{columns: [detector_region], encoding: onehot, top_k: 10, missing: value},"
    " {columns: [run_period, trigger_id], encoding: index}]",
]


WARMUP_ROWS = 100_000
DATA_DIR = REPO / "var" / "bench" / "featurize_vs_mllib"


def configs(rows: int):
    """(demo spec, MLlib-equivalent spec) configs over the generated table of ``rows`` rows."""
    from dlpipe.features.synthetic import NUMERIC
    from dlpipe.pipelines.config import load_config

    base = [
        f"data_dir={DATA_DIR}",
        "spark.master=local-cluster[2,1,4096]",
        "spark.driver_memory=2g",
        "spark.conf.spark.ui.showConsoleProgress=false",
        f"generate.rows={rows}",
        f"generate.partitions={max(8, rows // 250_000)}",
        f"generate.output_table=raw_{rows}",
        f"featurize.input={{table: raw_{rows}}}",
    ]
    demo = load_config(REPO / "conf" / "demo.yaml", base)
    equivalent = load_config(REPO / "conf" / "demo.yaml", base + [EQUIVALENT_SPEC[0] % ", ".join(NUMERIC), EQUIVALENT_SPEC[1]])
    return demo, equivalent


def contenders(spark, rows: int) -> dict:
    """name -> prepare(): the untimed set-up of one contender, which returns the call to time."""
    from dlpipe.pipelines import featurize, generate

    demo, equivalent = configs(rows)
    table = demo.qualified(demo.generate.output_table)
    if not spark.catalog.tableExists(table) or spark.table(table).count() != rows:
        generate.run(spark, demo)

    def featurize_afresh(cfg):
        # Each run starts from no feature table: an overwritten Delta table keeps every older version's files.
        spark.sql(f"DROP TABLE IF EXISTS {cfg.qualified(cfg.featurize.output_table)}")
        return lambda: featurize.run(spark, cfg)

    return {
        "mllib": lambda: lambda: mllib_featurize(spark, equivalent, str(DATA_DIR / f"mllib_{rows}")),
        "dlpipe": lambda: featurize_afresh(equivalent),
        "dlpipe_demo_spec": lambda: featurize_afresh(demo),
    }


REPEATS = 3  # MLlib and dlpipe alternate this many times (runs here vary by up to 25%); the demo spec runs once


def run_size(rows: int) -> None:
    """One size, in this process: generate (once), warm up every contender on a small table, then time each;
    MLlib and dlpipe alternately ``REPEATS`` times, reported as medians with their range."""
    import statistics

    from dlpipe.pipelines.session import build_session

    spark = build_session(configs(rows)[0])
    spark.sparkContext.setLogLevel("ERROR")
    try:
        # Warm-up: the first Spark jobs of a JVM pay for class loading, JIT and code generation.
        for prepare in contenders(spark, WARMUP_ROWS).values():
            prepare()()
        calls = contenders(spark, rows)
        spark.table(f"dlpipe.raw_{rows}").write.format("noop").mode("overwrite").save()  # the page cache, for both
        order = ["mllib", "dlpipe"] * REPEATS + ["dlpipe_demo_spec"]
        results: dict[str, list[tuple[float, float, float]]] = {}
        for name in order:
            call = calls[name]()  # untimed set-up
            # Flush what the previous contender wrote, so its write-back does not slow the next one down.
            os.sync()
            with DriverMemory(spark) as memory:
                _, seconds = timed(call)
            results.setdefault(name, []).append((seconds, memory.heap_peak_mb, memory.rss_peak_mb))
    finally:
        spark.stop()

    baseline = statistics.median(r[0] for r in results["mllib"])
    for name, runs in results.items():
        seconds = statistics.median(r[0] for r in runs)
        record = {
            "name": "featurize_vs_mllib" if name == "dlpipe" else f"featurize_vs_mllib.{name}",
            "rows": rows,
            "seconds": round(seconds, 3),
            "seconds_range": [round(min(r[0] for r in runs), 3), round(max(r[0] for r in runs), 3)],
            "runs": len(runs),
            "rows_per_s": round(rows / seconds, 1),
            "driver_heap_peak_mb": round(max(r[1] for r in runs), 1),
            "driver_rss_peak_mb": round(max(r[2] for r in runs), 1),
        }
        if name != "mllib":
            record.update(baseline="mllib_pipeline", baseline_seconds=round(baseline, 3), ratio=round(baseline / seconds, 3))
        print(json.dumps(record), flush=True)


def main(rows: int) -> None:
    sizes = [SMALL_ROWS, rows] if rows > SMALL_ROWS else [rows]
    for size in sizes:
        # A fresh driver per size: its memory peak belongs to that size alone.
        code = f"from benchmarks.featurize_vs_mllib import run_size; run_size({size})"
        started = time.time()
        status = subprocess.call([sys.executable, "-c", code], cwd=REPO)
        if status != 0:
            raise SystemExit(f"featurize_vs_mllib failed at {size:,} rows (exit {status}) after {time.time() - started:.0f}s")
