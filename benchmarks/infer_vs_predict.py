"""infer_vs_predict: batch scoring throughput (rows/s) of dlpipe's infer stage against ``model.predict`` on NumPy
arrays of the same featurized rows in one process (the limit on this machine), on 1,000,000 and 10,000,000
generated rows in one run (``--rows N``: that size only).

Per size, in var/bench/infer-<rows>/ (made once, kept): the demo pipeline's generate and featurize stages on the
rows, and a model trained on them for one epoch (2 Horovod workers; its quality does not matter here).

- ``infer``: ``pipelines.infer.run`` as ``dlpipe infer`` runs it: read the raw table, featurize with the artifact,
  score, write the Delta predictions table. ``infer_rows_per_s`` and ``ratio_infer`` (against the baseline).
- scoring alone (``seconds``, ``rows_per_s``, ``ratio``): ``pipelines.infer.score_features`` over the feature
  table's rows (already featurized: the baseline's input), read from its Parquet files and scored, written to
  Spark's ``noop`` sink.
- the handoff alone (``handoff_seconds``): the same job with the model taken out (the Python workers return the
  passthrough columns of each batch): what moving the rows from Spark's JVM to Python costs before any scoring.
  Both run ``REPEATS`` times, alternating, after the infer stage (warm Python workers); medians reported.
- drift's cost (``drift_cost``): the infer stage again with drift on and with it off (``infer.drift.enabled``),
  ``INFER_REPEATS`` times each, alternating; medians (``infer_drift_on_seconds``, ``infer_drift_off_seconds``).
  Runs in one process get faster one after another (the JVM keeps compiling), so a few seconds either way are
  noise there; the same comparison of whole ``dlpipe infer`` commands, each in its own process as a scheduler
  starts it (``cli_drift_cost``, ``cli_drift_on_seconds``, ``cli_drift_off_seconds``), follows the in-process
  measurements.
- baseline (``benchmarks.predict_baseline``, its own process): ``model.predict`` with the same batch size on the
  feature table's rows read into NumPy with pyarrow, ``REPEATS`` times, the median reported; the read
  (``baseline_load_seconds``) is not counted.

Peak resident memory, sampled every 0.25 s: ``peak_jvm_mb`` (the Spark driver JVM, which in local mode is also the
executor), ``peak_python_workers_mb`` (Spark's Python workers, where the model runs: the executor side of the
scoring), ``peak_driver_python_mb`` (the Python driver), and ``baseline_peak_mem_mb``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import psutil

from benchmarks import training_data
from benchmarks.measure import PeakMemory
from dlpipe.spark_settings import spark_settings

DEFAULT_ROWS = (1_000_000, 10_000_000)
REPEATS = 3  # scoring alone and the baseline each run this often; medians are reported
# The infer stage with drift on and with drift off, each this often: with 3, the in-process runs at 10M rows
# spread over 71-85 s, wider than the cost measured.
INFER_REPEATS = 5


def spark_role(proc: psutil.Process, root: psutil.Process) -> str | None:
    """Which part of a local Spark application a process of this benchmark's tree is."""
    if proc.pid == root.pid:
        return "driver_python"
    command = " ".join(proc.cmdline())
    if "java" in command.split(" ")[0]:
        return "jvm"
    if "pyspark.daemon" in command or "pyspark.worker" in command or "python" in command:
        return "python_workers"
    return None


def predict_baseline(job: dict) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(job, f)
    try:
        out = subprocess.run([sys.executable, "-m", "benchmarks.predict_baseline", f.name],
                             capture_output=True, text=True, check=False)
    finally:
        os.unlink(f.name)
    if out.returncode != 0:
        raise SystemExit(f"predict baseline failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _passthrough(keep: tuple[str, ...]):
    def passthrough(batches):
        from dlpipe.models.spark_worker import keep_archive_indexes

        keep_archive_indexes()  # as the scorer does
        for batch in batches:
            yield batch.select(list(keep))
    return passthrough


def handoff_only(features, model):
    """``score_features`` without the model: the same columns go to the Python workers, the passthrough comes back."""
    from dlpipe.features.apply import scorer_input

    keep = model.fitted.schema.passthrough
    return scorer_input(features, model.fitted.schema, keep).mapInArrow(_passthrough(keep),
                                                                         features.select(*keep).schema)


def drift_cost(spark, cfg) -> dict:
    """The infer stage with drift on and off (``infer.drift.enabled``), ``INFER_REPEATS`` times each, alternating
    which goes first, after the first run warmed the Python workers; each run writes a table of its own (dropped
    after), so that no run reads what another wrote. Medians, and drift's cost as a fraction of the time without."""
    from dlpipe.pipelines import infer

    seconds = {True: [], False: []}
    for i in range(INFER_REPEATS):
        for enabled in (True, False) if i % 2 == 0 else (False, True):
            table = f"bench_drift_{'on' if enabled else 'off'}_{i}"
            settings = dataclasses.replace(cfg.infer, output_table=table,
                                           drift=dataclasses.replace(cfg.infer.drift, enabled=enabled))
            started = time.perf_counter()
            infer.run(spark, dataclasses.replace(cfg, infer=settings), run_id=f"bench-{table}")
            seconds[enabled].append(time.perf_counter() - started)
            spark.sql(f"DROP TABLE {cfg.qualified(table)}")
    return on_and_off("infer_drift", seconds, cost="drift_cost")


def on_and_off(name: str, seconds: dict[bool, list[float]], cost: str) -> dict:
    """Medians and ranges of the runs with drift on (``seconds[True]``) and off, and drift's cost as a fraction of
    the time without."""
    on, off = statistics.median(seconds[True]), statistics.median(seconds[False])
    return {f"{name}_on_seconds": round(on, 3), f"{name}_off_seconds": round(off, 3),
            f"{name}_on_range": [round(min(seconds[True]), 3), round(max(seconds[True]), 3)],
            f"{name}_off_range": [round(min(seconds[False]), 3), round(max(seconds[False]), 3)],
            cost: round(on / off - 1, 4)}


def measure(rows: int) -> dict:
    from dlpipe.pipelines import infer
    from dlpipe.pipelines.session import build_session
    from dlpipe.pipelines.tables import delta_version
    from dlpipe.pipelines.train import table_files

    cfg = training_data.config(rows, "train.epochs=1", "train.early_stopping=null", "train.num_proc=2",
                               f"data_dir={infer_dir(rows)}")
    spark = build_session(cfg)
    try:
        training_data.prepare(spark, cfg, train_model=True)
        model = infer.scoring_model(cfg)
        with PeakMemory(role=spark_role) as memory:
            started = time.perf_counter()
            result = infer.run(spark, cfg, run_id="bench")
            infer_seconds = time.perf_counter() - started

            features = spark.table(cfg.qualified(cfg.featurize.output_table))
            timings = {"score": [], "handoff": []}
            with spark_settings(spark, infer.scoring_batches(cfg.infer.batch_size)):
                for _ in range(REPEATS):
                    for job, scored in (("score", infer.score_features(features, model, model.fitted.schema.passthrough)),
                                        ("handoff", handoff_only(features, model))):
                        started = time.perf_counter()
                        scored.write.format("noop").mode("overwrite").save()
                        timings[job].append(time.perf_counter() - started)
            drift = drift_cost(spark, cfg)
        scoring_seconds = statistics.median(timings["score"])
        table = cfg.qualified(cfg.featurize.output_table)
        version = delta_version(spark, table)
        files = [f.path for split in ("train", "validation", "test") for f in table_files(spark, table, version, split)]
    finally:
        spark.stop()
    baseline = predict_baseline({"schema": model.fitted.schema.to_json(), "files": files, "model": str(model.path),
                                 "batch_size": cfg.infer.batch_size, "repeats": REPEATS})
    assert baseline["rows"] == result.rows == rows, (baseline["rows"], result.rows, rows)
    return {
        "name": "infer_vs_predict",
        "rows": rows,
        "seconds": round(scoring_seconds, 3),
        "rows_per_s": round(rows / scoring_seconds, 1),
        "baseline": "tf.keras model.predict on NumPy arrays, one process",
        "baseline_seconds": baseline["predict_seconds"],
        "baseline_rows_per_s": round(rows / baseline["predict_seconds"], 1),
        "ratio": round(baseline["predict_seconds"] / scoring_seconds, 3),
        "seconds_range": [round(min(timings["score"]), 3), round(max(timings["score"]), 3)],
        "handoff_seconds": round(statistics.median(timings["handoff"]), 3),
        "handoff_seconds_range": [round(min(timings["handoff"]), 3), round(max(timings["handoff"]), 3)],
        "baseline_seconds_range": baseline["predict_seconds_range"],
        "infer_seconds": round(infer_seconds, 3),
        "infer_rows_per_s": round(rows / infer_seconds, 1),
        "ratio_infer": round(baseline["predict_seconds"] / infer_seconds, 3),
        **drift,
        "batch_size": cfg.infer.batch_size,
        "peak_jvm_mb": round(memory.peak_by_role.get("jvm", 0.0), 1),
        "peak_python_workers_mb": round(memory.peak_by_role.get("python_workers", 0.0), 1),
        "peak_driver_python_mb": round(memory.peak_by_role.get("driver_python", 0.0), 1),
        "baseline_load_seconds": baseline["load_seconds"],
        "baseline_peak_mem_mb": baseline["peak_mem_mb"],
    }


def run_size(rows: int) -> None:
    print(json.dumps(measure(rows)), flush=True)


def infer_dir(rows: int):
    """Where this benchmark keeps its data, models and tables for ``rows`` rows."""
    return training_data.REPO / "var" / "bench" / f"infer-{rows}"


def cli_table(enabled: bool, i: int) -> str:
    return f"bench_cli_drift_{'on' if enabled else 'off'}_{i}"


def cli_drift_cost(rows: int) -> dict:
    """``dlpipe infer`` with drift on and off, each in its own process (a cold JVM, as a scheduler starts it),
    ``INFER_REPEATS`` times each, alternating which goes first; each run writes a table of its own, dropped after."""
    dlpipe = os.path.join(os.path.dirname(sys.executable), "dlpipe")
    settings = [f"--set={s}" for s in (*training_data.settings(rows), f"data_dir={infer_dir(rows)}")]
    seconds = {True: [], False: []}
    for i in range(INFER_REPEATS):
        for enabled in (True, False) if i % 2 == 0 else (False, True):
            started = time.perf_counter()
            subprocess.run([dlpipe, "infer", "--config", "conf/demo.yaml", *settings,
                            f"--set=infer.output_table={cli_table(enabled, i)}",
                            f"--set=infer.drift.enabled={str(enabled).lower()}"],
                           cwd=training_data.REPO, check=True, stdout=subprocess.DEVNULL)
            seconds[enabled].append(time.perf_counter() - started)
    code = f"from benchmarks.infer_vs_predict import drop_cli_tables; drop_cli_tables({rows})"
    subprocess.run([sys.executable, "-c", code], cwd=training_data.REPO, check=True)
    return on_and_off("cli_drift", seconds, cost="cli_drift_cost")


def drop_cli_tables(rows: int) -> None:
    from dlpipe.pipelines.session import build_session

    cfg = training_data.config(rows, f"data_dir={infer_dir(rows)}")
    spark = build_session(cfg)
    for i in range(INFER_REPEATS):
        for enabled in (True, False):
            spark.sql(f"DROP TABLE IF EXISTS {cfg.qualified(cli_table(enabled, i))}")
    spark.stop()


def main(rows) -> None:
    for size in (rows if isinstance(rows, tuple) else (rows,)):
        # A fresh driver per size: its memory peaks belong to that size alone, and a second Spark session in one
        # process fails to open the other size's embedded Derby metastore (a NullPointerException inside Derby).
        # The dlpipe commands come after it: they open the same metastore.
        code = f"from benchmarks.infer_vs_predict import run_size; run_size({size})"
        status = subprocess.call([sys.executable, "-c", code], cwd=training_data.REPO)
        if status != 0:
            raise SystemExit(f"infer_vs_predict failed at {size:,} rows (exit {status})")
        print(json.dumps({"name": "infer_vs_predict", "rows": size, **cli_drift_cost(size)}), flush=True)
