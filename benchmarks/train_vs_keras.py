"""train_vs_keras: training throughput (samples/s) of dlpipe's Horovod-on-Spark training with 2 workers against a
single-process ``tf.keras`` ``fit`` on the same rows held in memory as NumPy arrays (the limit on this machine).

Same feature table (``benchmarks.training_data``: the demo spec on ``--rows`` generated rows), same model (the
default network of the demo config), optimizer, loss, metrics, batch size (``train.batch_size``, per step) and
epochs; early stopping off, validation every epoch in both.

- dlpipe: ``pipelines.train.run`` with ``num_proc=2``: Petastorm streams each rank's files, Horovod averages the
  gradients. ``seconds`` is the ranks' ``fit`` time (the slowest rank), which is what the throughput and ``ratio``
  use; ``stage_seconds`` is the whole stage (Spark job, Horovod start, saving the model), ``ratio_stage`` its ratio.
  These are for the default controller, Gloo; the same with ``train.controller: mpi`` is in ``*_mpi``.
- Keras (``benchmarks.keras_baseline``, its own process): ``model.fit`` on NumPy arrays; ``baseline_seconds`` is
  the fit alone, loading the arrays (``baseline_load_seconds``) not counted.

The three alternate three times on the same machine; medians are reported, ranges in ``*_range``.
"""
from __future__ import annotations

import dataclasses
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import training_data

DEFAULT_ROWS = 1_000_000
EPOCHS = 3
REPEATS = 3
CONTROLLERS = ("gloo", "mpi")  # gloo, the default, gives ``ratio``


def keras_fit(job_path: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.keras_baseline", str(job_path)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"keras baseline failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def dlpipe_fit(spark, cfg, controller: str) -> dict:
    """One ``dlpipe train`` stage with this controller: the ranks' fit time, the whole stage's, the last AUC."""
    from dlpipe.pipelines import train

    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, controller=controller))
    started = time.perf_counter()
    result = train.run(spark, cfg, run_id=f"bench-{controller}-{time.time_ns()}")
    stage_seconds = time.perf_counter() - started
    metadata = json.loads((Path(result.model_path) / "metadata.json").read_text())
    return {"seconds": max(metadata["seconds_per_rank"]), "stage_seconds": stage_seconds,
            "val_auc": result.history["val_auc"][-1], "train_rows": metadata["train_rows"]}


def main(rows: int) -> None:
    from dlpipe.pipelines import train
    from dlpipe.pipelines.session import build_session

    cfg = training_data.config(rows, f"train.epochs={EPOCHS}", "train.early_stopping=null", "train.num_proc=2")
    tc = cfg.train
    spark = build_session(cfg)
    runs: list[dict] = []
    try:
        training_data.prepare(spark, cfg)
        schema, train_files, validation_files = training_data.feature_files(spark, cfg)
        job = {
            "schema": schema.to_json(),
            "network": dataclasses.asdict(train.network_settings(cfg)),
            "train_files": [f.path for f in train_files],
            "validation_files": [f.path for f in validation_files],
            "batch_size": tc.batch_size, "epochs": EPOCHS, "learning_rate": tc.learning_rate,
            "optimizer": tc.optimizer, "momentum": tc.momentum, "loss": tc.loss,
        }
        job_path = cfg.data_path / "tmp" / "keras_baseline.json"
        job_path.write_text(json.dumps(job))
        for _ in range(REPEATS):  # alternating, so all see the same machine
            run = {controller: dlpipe_fit(spark, cfg, controller) for controller in CONTROLLERS}
            runs.append({**run["gloo"], "mpi": run["mpi"], "baseline": keras_fit(job_path)})
    finally:
        spark.stop()
    seconds = [r["seconds"] for r in runs]
    stage = [r["stage_seconds"] for r in runs]
    mpi = [r["mpi"]["seconds"] for r in runs]
    mpi_stage = [r["mpi"]["stage_seconds"] for r in runs]
    baseline = [r["baseline"]["fit_seconds"] for r in runs]
    samples = runs[0]["train_rows"] * EPOCHS
    median = statistics.median
    print(json.dumps({
        "name": "train_vs_keras",
        "rows": runs[0]["train_rows"],
        "epochs": EPOCHS,
        "batch_size": tc.batch_size,
        "num_proc": tc.num_proc,
        "seconds": round(median(seconds), 3),
        "seconds_range": [round(min(seconds), 3), round(max(seconds), 3)],
        "samples_per_s": round(samples / median(seconds)),
        "stage_seconds": round(median(stage), 3),
        "val_auc": round(runs[-1]["val_auc"], 4),
        "baseline": "single-process tf.keras fit on NumPy arrays",
        "baseline_seconds": round(median(baseline), 3),
        "baseline_seconds_range": [round(min(baseline), 3), round(max(baseline), 3)],
        "baseline_samples_per_s": round(samples / median(baseline)),
        "baseline_load_seconds": runs[-1]["baseline"]["load_seconds"],
        "baseline_val_auc": runs[-1]["baseline"]["val_auc"],
        "ratio": round(median(baseline) / median(seconds), 3),
        "ratio_stage": round(median(baseline) / median(stage), 3),
        "seconds_mpi": round(median(mpi), 3),
        "seconds_range_mpi": [round(min(mpi), 3), round(max(mpi), 3)],
        "samples_per_s_mpi": round(samples / median(mpi)),
        "stage_seconds_mpi": round(median(mpi_stage), 3),
        "val_auc_mpi": round(runs[-1]["mpi"]["val_auc"], 4),
        "ratio_mpi": round(median(baseline) / median(mpi), 3),
        "ratio_stage_mpi": round(median(baseline) / median(mpi_stage), 3),
    }), flush=True)
